/* train_ckpt.h — saving a training run's whole state into a checkpoint and resuming from one (CPU trainer). */
#ifndef KL_TRAIN_CKPT_H
#define KL_TRAIN_CKPT_H

#include "config.h"
#include "loader.h"
#include "trainer.h"

/* Writes ckpt_root/step_XXXXXXXX for the trainer's current step (atomically; marked DONE), names it in
 * saved_dir, then prunes older checkpoints per train.ckpt_keep / ckpt_keep_every; a pruning failure is not
 * an error but a message in `warning` (empty otherwise) for the caller to print. */
kl_status kl_train_save_checkpoint(const kl_config *c, kl_trainer *t, kl_loader *train, const char *ckpt_root,
                                   char *saved_dir, size_t n, char *warning, size_t wn);
/* Applies train.resume: none, auto (the newest complete checkpoint under ckpt_root, if any) or a step folder.
 * A checkpoint from a different model, optimizer or world size is refused with the differences listed.
 * *resumed = 1 when state was restored; message gets what the caller should print (may be empty). */
kl_status kl_train_restore_checkpoint(const kl_config *c, kl_trainer *t, kl_loader *train, const char *ckpt_root,
                                      int *resumed, char *message, size_t n);

#endif
