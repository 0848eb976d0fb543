/* device.h — what the host code may ask about GPUs without knowing whether CUDA was built in. */
#ifndef KL_DEVICE_H
#define KL_DEVICE_H
#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when CUDA is not built in or no driver/device is present. */
int kl_gpu_count(void);
/* Name of device `index` into buf (empty string when unavailable). */
void kl_gpu_name(int index, char *buf, int buf_size);

#ifdef __cplusplus
}
#endif
#endif
