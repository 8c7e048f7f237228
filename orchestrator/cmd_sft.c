// maye sft: the supervised fine-tuning baseline of the MAYE comparison (see train.h).
#include "train.h"

int cmd_sft(int argc, char **argv) { return maye_train_main(argc, argv, 1); }
