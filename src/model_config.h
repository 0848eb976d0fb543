/* model_config.h — kl_config -> kl_model_shape. */
#ifndef KL_MODEL_CONFIG_H
#define KL_MODEL_CONFIG_H
#include "config.h"
#include "model.h"

/* The shape: from model.hf_dir's config.json, model.hf_config, or the model.* keys. */
kl_status kl_model_shape_from_config(const kl_config *c, kl_model_shape *s);

#endif
