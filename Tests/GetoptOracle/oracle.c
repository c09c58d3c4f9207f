/* getopt-oracle: glibc's own getopt_long over a corpus of command lines, for the test that holds
 * PasstConfig's GetoptScanner to it (PasstConfigTests/GetoptOracleTests.swift).
 *
 * Usage: getopt-oracle OPTSTRING LONGOPTS CORPUS
 *   OPTSTRING  the short option string, as passed to getopt_long ("+dqfel:h...")
 *   LONGOPTS   the long option table: entries "name:has_arg:val" separated by ','
 *   CORPUS     a file of command lines, one per line, arguments (argv[0] first) separated by 0x1f
 * For each command line, one line on stdout: the events separated by 0x1e, each with its fields
 * separated by 0x1d: "o", val, "1" and the argument or "0" and "" (an option); "e" and what getopt
 * printed without its newline (an error, the last event); "n" and optind (always last).
 * Single-threaded, so pointing stderr at a memory stream around each call is safe here. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTIONS 256
#define MAX_ARGUMENTS 64

/** Parses LONGOPTS into options (terminated by a zero entry); returns the count or -1. */
static int parse_long_options(char *spec, struct option *options)
{
	int count = 0;
	char *entry, *save = NULL;

	for (entry = strtok_r(spec, ",", &save); entry; entry = strtok_r(NULL, ",", &save)) {
		char *has_arg = strchr(entry, ':'), *val;

		if (!has_arg || count == MAX_OPTIONS - 1 || !(val = strchr(has_arg + 1, ':')))
			return -1;
		*has_arg++ = '\0';
		options[count].name = entry;
		options[count].has_arg = atoi(has_arg);
		options[count].flag = NULL;
		options[count].val = atoi(val + 1);
		count++;
	}
	memset(&options[count], 0, sizeof(options[count]));
	return count;
}

/** Runs one getopt_long scan over argv and prints its events as one line. */
static void scan(int argc, char **argv, const char *optstring, const struct option *options)
{
	optind = 0;
	for (;;) {
		char *captured = NULL;
		size_t captured_length = 0;
		FILE *capture = open_memstream(&captured, &captured_length), *saved = stderr;
		int value;

		if (!capture)
			exit(2);
		stderr = capture;
		optarg = NULL;
		value = getopt_long(argc, argv, optstring, options, NULL);
		stderr = saved;
		fclose(capture);

		if (value == -1) {
			free(captured);
			break;
		}
		if (captured_length) {
			if (captured[captured_length - 1] == '\n')
				captured[captured_length - 1] = '\0';
			printf("e\x1d%s\x1e", captured);
			free(captured);
			break;
		}
		free(captured);
		printf("o\x1d%d\x1d%s\x1d%s\x1e", value, optarg ? "1" : "0", optarg ? optarg : "");
	}
	printf("n\x1d%d\n", optind);
}

int main(int argc, char **argv)
{
	struct option options[MAX_OPTIONS];
	char *line = NULL;
	size_t size = 0;
	ssize_t length;
	FILE *corpus;

	if (argc != 4 || parse_long_options(argv[2], options) < 0 || !(corpus = fopen(argv[3], "r"))) {
		fprintf(stderr, "usage: getopt-oracle OPTSTRING LONGOPTS CORPUS\n");
		return 2;
	}
	while ((length = getline(&line, &size, corpus)) > 0) {
		char *arguments[MAX_ARGUMENTS + 1], *field, *rest = line;
		int count = 0;

		if (line[length - 1] == '\n')
			line[length - 1] = '\0';
		while ((field = strsep(&rest, "\x1f")) && count < MAX_ARGUMENTS)
			arguments[count++] = field;
		arguments[count] = NULL;
		scan(count, arguments, argv[1], options);
	}
	free(line);
	fclose(corpus);
	return 0;
}
