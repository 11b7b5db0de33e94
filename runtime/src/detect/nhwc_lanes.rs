//! The vector registers the kernels of [`super::nhwc`] are written over, one trait for every lane
//! width: AVX2 + FMA (8 floats, x86-64 CPUs that have them), SSE2 (4, every x86-64), NEON (4,
//! every aarch64) and plain `f32` (1, the channels left over after the vectors, and other
//! targets). The kernels hold their accumulators as arrays of these, a few pixels by a few
//! registers, so each loaded weight serves several pixels. Written with intrinsics rather than
//! arrays of floats left to the auto-vectoriser: with 4 pixels x 16 channels the compiler stopped
//! unrolling, kept the accumulators on the stack and ran them scalar (~4x slower than tract).

/// A vector of `N` floats.
pub trait Lanes: Copy {
    const N: usize;
    /// The next narrower vector, for the channels left when fewer than `N` remain.
    type Half: Lanes;
    fn splat(v: f32) -> Self;
    /// The first `N` floats of `s` (which must hold them).
    fn load(s: &[f32]) -> Self;
    /// `N` floats from `p` on, unchecked: for the innermost loops, whose bounds the kernels check
    /// once before.
    ///
    /// # Safety
    /// `p..p + N` must be inside one slice of floats.
    unsafe fn load_ptr(p: *const f32) -> Self;
    fn store(self, d: &mut [f32]);
    /// `self + a * b`, fused where the instruction set has it.
    fn madd(self, a: Self, b: Self) -> Self;
    fn relu(self) -> Self;
}

impl Lanes for f32 {
    const N: usize = 1;
    type Half = f32;
    #[inline(always)]
    fn splat(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        s[0]
    }
    #[inline(always)]
    unsafe fn load_ptr(p: *const f32) -> Self {
        unsafe { *p }
    }
    #[inline(always)]
    fn store(self, d: &mut [f32]) {
        d[0] = self;
    }
    #[inline(always)]
    fn madd(self, a: Self, b: Self) -> Self {
        self + a * b
    }
    #[inline(always)]
    fn relu(self) -> Self {
        self.max(0.0)
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx, Sse};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lanes;
    use std::arch::x86_64::*;

    /// SSE2, part of every x86-64 CPU (multiply, then add: no FMA).
    #[derive(Clone, Copy)]
    pub struct Sse(__m128);

    impl Lanes for Sse {
        const N: usize = 4;
        type Half = f32;
        #[inline(always)]
        fn splat(v: f32) -> Self {
            // SAFETY (here and below): SSE2 is in the x86-64 baseline; loads and stores go through
            // slices of at least 4 floats.
            Sse(unsafe { _mm_set1_ps(v) })
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
            Sse(unsafe { _mm_loadu_ps(s[..4].as_ptr()) })
        }
        #[inline(always)]
        unsafe fn load_ptr(p: *const f32) -> Self {
            Sse(unsafe { _mm_loadu_ps(p) })
        }
        #[inline(always)]
        fn store(self, d: &mut [f32]) {
            unsafe { _mm_storeu_ps(d[..4].as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn madd(self, a: Self, b: Self) -> Self {
            Sse(unsafe { _mm_add_ps(self.0, _mm_mul_ps(a.0, b.0)) })
        }
        #[inline(always)]
        fn relu(self) -> Self {
            Sse(unsafe { _mm_max_ps(self.0, _mm_setzero_ps()) })
        }
    }

    /// AVX2 + FMA: only ever made inside code compiled for those features, which runs only on CPUs
    /// that have them (`yunet_exec` checks at load and calls its `#[target_feature]` wrapper).
    #[derive(Clone, Copy)]
    pub struct Avx(__m256);

    impl Lanes for Avx {
        const N: usize = 8;
        type Half = Sse;
        #[inline(always)]
        fn splat(v: f32) -> Self {
            // SAFETY (here and below): see the type's comment; slices hold at least 8 floats.
            Avx(unsafe { _mm256_set1_ps(v) })
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
            Avx(unsafe { _mm256_loadu_ps(s[..8].as_ptr()) })
        }
        #[inline(always)]
        unsafe fn load_ptr(p: *const f32) -> Self {
            Avx(unsafe { _mm256_loadu_ps(p) })
        }
        #[inline(always)]
        fn store(self, d: &mut [f32]) {
            unsafe { _mm256_storeu_ps(d[..8].as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn madd(self, a: Self, b: Self) -> Self {
            Avx(unsafe { _mm256_fmadd_ps(a.0, b.0, self.0) })
        }
        #[inline(always)]
        fn relu(self) -> Self {
            Avx(unsafe { _mm256_max_ps(self.0, _mm256_setzero_ps()) })
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use arm::Neon;

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::Lanes;
    use std::arch::aarch64::*;

    /// NEON, part of every aarch64 CPU, with fused multiply-add.
    #[derive(Clone, Copy)]
    pub struct Neon(float32x4_t);

    impl Lanes for Neon {
        const N: usize = 4;
        type Half = f32;
        #[inline(always)]
        fn splat(v: f32) -> Self {
            // SAFETY (here and below): NEON is in the aarch64 baseline; loads and stores go
            // through slices of at least 4 floats.
            Neon(unsafe { vdupq_n_f32(v) })
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
            Neon(unsafe { vld1q_f32(s[..4].as_ptr()) })
        }
        #[inline(always)]
        unsafe fn load_ptr(p: *const f32) -> Self {
            Neon(unsafe { vld1q_f32(p) })
        }
        #[inline(always)]
        fn store(self, d: &mut [f32]) {
            unsafe { vst1q_f32(d[..4].as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn madd(self, a: Self, b: Self) -> Self {
            Neon(unsafe { vfmaq_f32(self.0, a.0, b.0) })
        }
        #[inline(always)]
        fn relu(self) -> Self {
            Neon(unsafe { vmaxq_f32(self.0, vdupq_n_f32(0.0)) })
        }
    }
}
