/* proc.c - (to be written) */
#include "common.h"

int
ht_proc_init(PyObject *m)
{
    return 0;
}
