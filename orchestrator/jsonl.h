// The JSON-lines filters of `maye` (judge, tokenize): read lines from a stream, skip blank ones, turn each
// into output text with a callback, write it to stdout; the first bad line stops the filter with the
// lines before it already written.
#pragma once
#include "core/util.h"

#include <stdio.h>

// fn turns one line (without its newline) into out; `where` is "<name>:<line number>" for messages; it
// returns -1 with a message set on a bad line.
typedef int (*maye_jsonl_fn)(void *ctx, const char *line, size_t len, const char *where, maye_buf *out);

// Runs fn over every non-blank line of `in` (named `name` in messages). Returns 0, or -1 with the message of
// the bad line or of a failed write to stdout.
int maye_jsonl_filter(FILE *in, const char *name, maye_jsonl_fn fn, void *ctx);
