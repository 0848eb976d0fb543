/* hf_config.h — Hugging Face config.json <-> kl_model_shape. */
#ifndef KL_HF_CONFIG_H
#define KL_HF_CONFIG_H
#include "kl_base.h"
#include "model.h"

/* Reads config.json at `path` into *s (then checked by kl_model_shape_check). Unsupported fields are errors. */
kl_status kl_hf_config_read(const char *path, kl_model_shape *s);
/* The same from config.json's text; `name` stands for the file in messages. */
kl_status kl_hf_config_parse(const char *text, const char *name, kl_model_shape *s);
/* A config.json text for shape s (malloc'd; free with free()). transformers loads it as is. */
char *kl_hf_config_json(const kl_model_shape *s);

#endif
