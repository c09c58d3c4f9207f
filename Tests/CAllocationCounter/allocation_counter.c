// Counting heap allocations for the allocation tests (as SwiftNIO's allocation counter does).
//
// Theory of operation: this target is linked into the test executable, which therefore defines
// malloc, calloc, realloc, memalign, aligned_alloc and posix_memalign itself. ELF symbol
// interposition sends every call in the process (the Swift runtime's included) here first; each
// counts one allocation for the calling thread in a thread-local counter and goes on to glibc's
// own implementation (__libc_*), so memory and free() stay glibc's. Per-thread counts keep the
// tests that run in parallel out of each other's figures.
#include <errno.h>
#include <stddef.h>
#include "CAllocationCounter.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static __thread long thread_allocations;

void *malloc(size_t size)
{
	thread_allocations++;
	return __libc_malloc(size);
}

void *calloc(size_t count, size_t size)
{
	thread_allocations++;
	return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size)
{
	thread_allocations++;
	return __libc_realloc(pointer, size);
}

void *memalign(size_t alignment, size_t size)
{
	thread_allocations++;
	return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
	thread_allocations++;
	return __libc_memalign(alignment, size);
}

int posix_memalign(void **result, size_t alignment, size_t size)
{
	void *pointer;

	if (alignment < sizeof(void *) || (alignment & (alignment - 1)))
		return EINVAL;
	thread_allocations++;
	pointer = __libc_memalign(alignment, size);
	if (!pointer)
		return ENOMEM;
	*result = pointer;
	return 0;
}

long allocation_counter_thread_total(void)
{
	return thread_allocations;
}
