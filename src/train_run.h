/* train_run.h — one whole training run from a resolved, validated config (the `kiln train` command). */
#ifndef KL_TRAIN_RUN_H
#define KL_TRAIN_RUN_H
#include "config.h"

kl_status kl_train_run(const kl_config *c);

#endif
