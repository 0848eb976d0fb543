/* train_run.h — one whole training run from a resolved, validated config (the `kiln train` command). */
#ifndef KL_TRAIN_RUN_H
#define KL_TRAIN_RUN_H
#include "config.h"
#include "linear.h"

kl_status kl_train_run(const kl_config *c);
/* The blocks' linear-layer precision a config asks for (precision.matmul and nvfp4_backward, randomness from
 * train.seed), as training and `kiln eval` apply it; bf16 is plain FP32 on the CPU (linear.h). */
kl_linear_cfg kl_train_linear_cfg(const kl_config *c);

#endif
