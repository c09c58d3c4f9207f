/* getopt_long access for the command line parser (filled in by PasstConfig work). */
#ifndef SHIM_GETOPT_H
#define SHIM_GETOPT_H
#endif
