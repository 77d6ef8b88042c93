import sys

from heaptrail.cli import main

sys.exit(main())
