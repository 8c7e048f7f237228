// maye train: the RL pipeline of one configuration, for one or several seeds (see train.h).
#include "train.h"

int cmd_train(int argc, char **argv) { return maye_train_main(argc, argv, 0); }
