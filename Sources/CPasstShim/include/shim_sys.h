/* Kernel interfaces for PasstSys (filled in by PasstSys work). */
#ifndef SHIM_SYS_H
#define SHIM_SYS_H
#endif
