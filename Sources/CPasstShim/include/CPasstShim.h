/* CPasstShim: the few kernel and libc interfaces Swift cannot import directly (variadic
 * functions, function-like macros, structs missing from the Glibc module). Each concern has its own
 * header; this umbrella includes them all. */
#ifndef CPASSTSHIM_H
#define CPASSTSHIM_H
#include "shim_sys.h"
#include "shim_ns.h"
#include "shim_isolation.h"
#endif
