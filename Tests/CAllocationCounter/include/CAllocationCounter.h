// Heap allocations of the calling thread, counted by the malloc family defined in
// allocation_counter.c (linked into the test executable only).
#ifndef C_ALLOCATION_COUNTER_H
#define C_ALLOCATION_COUNTER_H

/// Allocations (malloc, calloc, realloc, memalign, aligned_alloc, posix_memalign) made by the
/// calling thread since it started.
long allocation_counter_thread_total(void);

#endif
