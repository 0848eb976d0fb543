/* model_io.h — a model to and from a Hugging Face folder (config.json + model.safetensors with HF tensor
 * names), so what kiln trains loads in `transformers` and what `transformers` saves loads in kiln. */
#ifndef KL_MODEL_IO_H
#define KL_MODEL_IO_H
#include "model.h"

/* Writes dir/config.json and dir/model.safetensors (F32). The folder must exist. */
kl_status kl_model_save(kl_model *m, const char *dir);
/* Creates a model from dir/config.json and loads dir/model.safetensors, or the shards that
 * dir/model.safetensors.index.json names (F32, BF16, F16 or F64 weights; safetensors.h kl_st_dir).
 * Missing or unexpected tensors and shapes that disagree with the config are errors that list them. */
kl_status kl_model_load(kl_model **out, const char *dir);
/* Copies the tokenizer and generation files a Hugging Face folder may hold (tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, vocab.json, merges.txt, generation_config.json) from
 * `from` into `to`, those that exist; so a folder kiln writes loads with its tokenizer. */
kl_status kl_model_copy_tokenizer(const char *from, const char *to);

#endif
