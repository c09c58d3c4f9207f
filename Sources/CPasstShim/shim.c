/* Translation unit so that SwiftPM builds the shim as a C library. */
#include "CPasstShim.h"
