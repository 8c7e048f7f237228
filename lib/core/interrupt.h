// Stop requests (SIGINT, SIGTERM) for long-running programs: the handler only records the request; the
// program checks maye_stop_requested() at safe points (between optimizer micro-batches, between steps) and
// stops cleanly there, e.g. after writing a checkpoint.
#pragma once
#include <signal.h>

void maye_install_stop_handlers(void);
int maye_stop_requested(void); // the signal number that asked to stop, 0 if none
