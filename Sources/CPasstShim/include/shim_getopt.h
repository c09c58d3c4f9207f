/* getopt_long access for the command line parser (PasstConfig).
 *
 * Theory of operation: the command line must behave exactly like upstream's, which is GNU
 * getopt_long: option abbreviations, "--" handling, '+' (stop at the first non-option) and the
 * error texts podman greps for ("PROG: unrecognized option '--map-guest-addr'"). So we call glibc's
 * own getopt_long rather than re-implementing it. getopt keeps its state in globals (optind, optarg,
 * its private scan state), hence:
 *   - shim_getopt_restart() sets optind = 0, which makes glibc re-initialise a fresh scan;
 *   - shim_getopt_step() performs one getopt_long call and returns everything the caller needs
 *     (return value, optarg, optind) by value, so Swift never touches the C globals;
 *   - the messages getopt would print on stderr are captured (stderr is pointed at a memory stream
 *     for the duration of the call) and handed back, so the caller decides where they go.
 * None of this is thread-safe: the Swift side serialises whole scans with a lock. */
#ifndef SHIM_GETOPT_H
#define SHIM_GETOPT_H

#include <getopt.h>

/* The outcome of one getopt_long call. */
struct shim_getopt_step {
	int value;		/* getopt_long's return: option value, '?' on error, -1 at the end */
	int next_index;		/* optind after the call: index of the next argument to scan */
	const char *argument;	/* optarg: the option's argument (points into argv), or NULL */
	char *diagnostic;	/* what getopt printed, malloc'd (free with shim_getopt_free), or NULL */
};

/** Makes the next shim_getopt_step() start a new scan (optind = 0, glibc's full re-initialisation). */
void shim_getopt_restart(void);

/** Runs getopt_long once on argv; returns its result with any error text captured, not printed. */
struct shim_getopt_step shim_getopt_step(int argc, char *const argv[], const char *optstring,
					 const struct option *longopts);

/** Releases a diagnostic returned by shim_getopt_step(). */
void shim_getopt_free(char *diagnostic);

#endif
