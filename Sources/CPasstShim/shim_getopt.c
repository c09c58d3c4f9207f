/* glibc getopt_long wrapper for PasstConfig: see the theory of operation in shim_getopt.h. */
#include <stdio.h>
#include <stdlib.h>
#include <getopt.h>

#include "shim_getopt.h"

/** Makes the next shim_getopt_step() start a new scan (optind = 0, glibc's full re-initialisation). */
void shim_getopt_restart(void)
{
	optind = 0;
	optarg = NULL;
}

/** Runs getopt_long once on argv; returns its result with any error text captured, not printed. */
struct shim_getopt_step shim_getopt_step(int argc, char *const argv[], const char *optstring,
					 const struct option *longopts)
{
	struct shim_getopt_step step = { 0 };
	char *captured = NULL;
	size_t captured_len = 0;
	FILE *capture = open_memstream(&captured, &captured_len);
	FILE *saved_stderr = stderr;

	if (capture)
		stderr = capture;
	optarg = NULL;
	step.value = getopt_long(argc, argv, optstring, longopts, NULL);
	step.next_index = optind;
	step.argument = optarg;
	if (capture) {
		stderr = saved_stderr;
		fclose(capture);
		if (captured_len)
			step.diagnostic = captured;
		else
			free(captured);
	}
	return step;
}

/** Releases a diagnostic returned by shim_getopt_step(). */
void shim_getopt_free(char *diagnostic)
{
	free(diagnostic);
}
