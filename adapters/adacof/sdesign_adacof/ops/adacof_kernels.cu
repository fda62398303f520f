// AdaCoF warp: forward and the gradients w.r.t. input, weight, alpha and beta.
//
// Layouts (all contiguous): input (B, C, Hin, Win); weight/alpha/beta and
// their gradients (B, F*F, H, W); output / grad_output (B, C, H, W).
// Tap t = k*F + l of output pixel (i, j) samples the input at
//   y = i + k*dilation + shift_y + alpha,  x = j + l*dilation + shift_x + beta
// bilinearly, with corners floor(y), floor(y)+1 (and the same for x) clamped to
// the input. shift = -(F-1)*dilation/2 for unpadded input (implicit
// replication padding), 0 for input the caller already padded.
// With truncate != 0 the lower corner is instead the tap's integer position
// plus the offset rounded toward zero, and the fractions are offset minus
// that (negative for negative offsets: extrapolation), as the published
// kernels compute it with `int A = (int) alpha;`.
//
// Same math as sdesign_adacof/ops/warp_torch.py; the tests compare the two.

template <typename scalar_t>
struct Corners {
    long long i00, i01, i10, i11;  // offsets into one image plane
    scalar_t fy, fx;
};

template <typename scalar_t>
__device__ __forceinline__ scalar_t toward_zero(scalar_t v)
{
    return v < 0 ? -floor(-v) : floor(v);
}

// base_y, base_x: the tap's integer sample position; alpha, beta: its offsets.
template <typename scalar_t>
__device__ __forceinline__ Corners<scalar_t> corners(
    int base_y, scalar_t alpha, int base_x, scalar_t beta, int in_height, int in_width, int truncate)
{
    Corners<scalar_t> c;
    scalar_t y0, x0;
    if (truncate) {
        const scalar_t ta = toward_zero(alpha), tb = toward_zero(beta);
        y0 = (scalar_t)base_y + ta;
        x0 = (scalar_t)base_x + tb;
        c.fy = alpha - ta;
        c.fx = beta - tb;
    } else {
        const scalar_t y = (scalar_t)base_y + alpha;
        const scalar_t x = (scalar_t)base_x + beta;
        y0 = floor(y);
        x0 = floor(x);
        c.fy = y - y0;
        c.fx = x - x0;
    }
    // clamp in floating point first so far-away samples cannot overflow the int cast
    const scalar_t ymax = (scalar_t)(in_height - 1), xmax = (scalar_t)(in_width - 1);
    const long long r0 = (long long)fmin(fmax(y0, (scalar_t)0), ymax);
    const long long r1 = (long long)fmin(fmax(y0 + 1, (scalar_t)0), ymax);
    const long long c0 = (long long)fmin(fmax(x0, (scalar_t)0), xmax);
    const long long c1 = (long long)fmin(fmax(x0 + 1, (scalar_t)0), xmax);
    c.i00 = r0 * in_width + c0;
    c.i01 = r0 * in_width + c1;
    c.i10 = r1 * in_width + c0;
    c.i11 = r1 * in_width + c1;
    return c;
}

// One thread per (batch, block of up to CHANNEL_BLOCK channels, output pixel),
// accumulating its channels in registers: each weight/alpha/beta value is read
// once per channel block, so the launcher picks a block as wide as the image
// (4 for frames, up to 32 for CDFI's stacked feature pyramid).
template <typename scalar_t, int CHANNEL_BLOCK>
__global__ void adacof_forward(
    const scalar_t* __restrict__ input, const scalar_t* __restrict__ weight,
    const scalar_t* __restrict__ alpha, const scalar_t* __restrict__ beta,
    scalar_t* __restrict__ output,
    const int batch, const int channels, const int in_height, const int in_width,
    const int height, const int width, const int kernel_size, const int dilation,
    const int shift_y, const int shift_x, const int truncate)
{
    const long long hw = (long long)height * width;
    const long long plane = (long long)in_height * in_width;
    const int taps = kernel_size * kernel_size;
    const int blocks = (channels + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
    const long long total = (long long)batch * blocks * hw;
    for (long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x; n < total;
         n += (long long)blockDim.x * gridDim.x) {
        const long long p = n % hw;
        const int cb = (int)((n / hw) % blocks);
        const int b = (int)(n / (hw * blocks));
        const int i = (int)(p / width), j = (int)(p % width);
        const int c_begin = cb * CHANNEL_BLOCK;
        const scalar_t* img = input + ((long long)b * channels + c_begin) * plane;
        const long long tap0 = (long long)b * taps * hw + p;
        scalar_t acc[CHANNEL_BLOCK];
#pragma unroll
        for (int c = 0; c < CHANNEL_BLOCK; ++c) acc[c] = 0;
        for (int t = 0; t < taps; ++t) {
            const long long q = tap0 + (long long)t * hw;
            const scalar_t w = weight[q];
            const Corners<scalar_t> k = corners<scalar_t>(
                i + (t / kernel_size) * dilation + shift_y, alpha[q],
                j + (t % kernel_size) * dilation + shift_x, beta[q], in_height, in_width, truncate);
            const scalar_t w00 = w * (1 - k.fy) * (1 - k.fx), w01 = w * (1 - k.fy) * k.fx;
            const scalar_t w10 = w * k.fy * (1 - k.fx), w11 = w * k.fy * k.fx;
#pragma unroll
            for (int c = 0; c < CHANNEL_BLOCK; ++c) {
                if (c_begin + c < channels) {
                    const scalar_t* src = img + c * plane;
                    acc[c] += w00 * src[k.i00] + w01 * src[k.i01] + w10 * src[k.i10] + w11 * src[k.i11];
                }
            }
        }
#pragma unroll
        for (int c = 0; c < CHANNEL_BLOCK; ++c) {
            if (c_begin + c < channels)
                output[((long long)b * channels + c_begin + c) * hw + p] = acc[c];
        }
    }
}

// One thread per (batch, tap, output pixel), the layout of weight/alpha/beta,
// so their gradients are written coalesced. The input gradient is a scatter
// with atomics (many taps of many pixels can hit one input pixel).
template <typename scalar_t>
__global__ void adacof_backward(
    const scalar_t* __restrict__ grad_output, const scalar_t* __restrict__ input,
    const scalar_t* __restrict__ weight, const scalar_t* __restrict__ alpha,
    const scalar_t* __restrict__ beta,
    scalar_t* __restrict__ grad_input, scalar_t* __restrict__ grad_weight,
    scalar_t* __restrict__ grad_alpha, scalar_t* __restrict__ grad_beta,
    const int batch, const int channels, const int in_height, const int in_width,
    const int height, const int width, const int kernel_size, const int dilation,
    const int shift_y, const int shift_x, const int need_input_grad, const int truncate)
{
    const long long hw = (long long)height * width;
    const long long plane = (long long)in_height * in_width;
    const int taps = kernel_size * kernel_size;
    const long long total = (long long)batch * taps * hw;
    for (long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x; n < total;
         n += (long long)blockDim.x * gridDim.x) {
        const long long p = n % hw;
        const int t = (int)((n / hw) % taps);
        const int b = (int)(n / (hw * taps));
        const int i = (int)(p / width), j = (int)(p % width);
        const scalar_t w = weight[n];
        const Corners<scalar_t> k = corners<scalar_t>(
            i + (t / kernel_size) * dilation + shift_y, alpha[n],
            j + (t % kernel_size) * dilation + shift_x, beta[n], in_height, in_width, truncate);
        const scalar_t b00 = (1 - k.fy) * (1 - k.fx), b01 = (1 - k.fy) * k.fx;
        const scalar_t b10 = k.fy * (1 - k.fx), b11 = k.fy * k.fx;
        scalar_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
        const scalar_t* img = input + (long long)b * channels * plane;
        const scalar_t* go = grad_output + (long long)b * channels * hw + p;
        scalar_t* gin = grad_input + (long long)b * channels * plane;
        for (int c = 0; c < channels; ++c) {
            const scalar_t g = go[c * hw];
            const scalar_t* src = img + c * plane;
            s00 += g * src[k.i00];
            s01 += g * src[k.i01];
            s10 += g * src[k.i10];
            s11 += g * src[k.i11];
            if (need_input_grad) {
                scalar_t* dst = gin + c * plane;
                const scalar_t wg = w * g;
                atomicAdd(dst + k.i00, wg * b00);
                atomicAdd(dst + k.i01, wg * b01);
                atomicAdd(dst + k.i10, wg * b10);
                atomicAdd(dst + k.i11, wg * b11);
            }
        }
        grad_weight[n] = b00 * s00 + b01 * s01 + b10 * s10 + b11 * s11;
        grad_alpha[n] = w * ((1 - k.fx) * (s10 - s00) + k.fx * (s11 - s01));
        grad_beta[n] = w * ((1 - k.fy) * (s01 - s00) + k.fy * (s11 - s10));
    }
}
