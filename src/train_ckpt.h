/* train_ckpt.h — saving a training run's whole state into a checkpoint and resuming from one, for the CPU
 * trainer and the GPU trainer. Both write the same entries (the GPU's AdamW moments under the CPU AdamW's
 * names, in the CPU parameter layout), so a checkpoint of either resumes on the other. */
#ifndef KL_TRAIN_CKPT_H
#define KL_TRAIN_CKPT_H

#include "config.h"
#include "loader.h"
#include "train_cuda.h"
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

/* The same for the GPU trainer. `host` is the CPU model the trainer was created from: saving downloads the
 * master weights into it (and the moments through a host staging buffer); restoring reads the checkpoint
 * into it and uploads master weights (refreshing the BF16 copy), moments, step, streak and counters. */
kl_status kl_train_save_checkpoint_cuda(const kl_config *c, kl_trainer_cuda *t, kl_model *host, kl_loader *train,
                                        const char *ckpt_root, char *saved_dir, size_t n, char *warning, size_t wn);
kl_status kl_train_restore_checkpoint_cuda(const kl_config *c, kl_trainer_cuda *t, kl_model *host, kl_loader *train,
                                           const char *ckpt_root, int *resumed, char *message, size_t n);

#endif
