//! Run-time choice of the instruction set, and the multiversioning that compiles each portable
//! kernel once per instruction set.
//!
//! The kernels are plain Rust over fixed-size arrays, written so that LLVM vectorises them; the
//! wrappers below compile the same code with AVX-512 or AVX2+FMA enabled on x86_64 and pick one at
//! run time, so the binary still runs on any x86_64. aarch64 always has NEON and FMA.

/// The instruction set the fast kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isa {
    /// Baseline code of the target (SSE2 on x86_64, NEON on aarch64).
    Baseline,
    /// x86_64 with AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86_64 with AVX-512F.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// Every instruction set this CPU can run (for tests that compare them).
    pub fn available() -> Vec<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            let best = Isa::detect();
            [Isa::Baseline, Isa::Avx2, Isa::Avx512]
                .into_iter()
                .filter(|&i| i == Isa::Baseline || i as u8 <= best as u8)
                .collect()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            vec![Isa::Baseline]
        }
    }
}

/// How `a * b + c` is computed: fused where the target has FMA, else a multiply and an add
/// (`f32::mul_add` without hardware FMA is a slow library call).
pub(crate) trait Madd {
    /// `a * b + c`.
    fn madd(a: f32, b: f32, c: f32) -> f32;
}

/// Fused multiply-add.
pub(crate) struct Fused;
impl Madd for Fused {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// Separate multiply and add.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
pub(crate) struct Split;
impl Madd for Split {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `a * b + c` lane by lane. Arrays go by value so that LLVM keeps each in one register; the
/// same loops written over `&mut` rows of a 2-D array are sometimes left scalar.
#[inline(always)]
pub(crate) fn fma<S: Madd, const W: usize>(a: [f32; W], b: [f32; W], c: [f32; W]) -> [f32; W] {
    core::array::from_fn(|j| S::madd(a[j], b[j], c[j]))
}

/// `a * b + c` with a scalar `a`, lane by lane (see [`fma`]).
#[inline(always)]
pub(crate) fn fma_splat<S: Madd, const W: usize>(a: f32, b: [f32; W], c: [f32; W]) -> [f32; W] {
    core::array::from_fn(|j| S::madd(a, b[j], c[j]))
}

/// Define `$name(isa, args...)` that runs `$imp::<Madd, $rows>(args...)` compiled for `isa`.
///
/// `$imp` must be `#[inline(always)]` so that its body is compiled inside each wrapper with that
/// wrapper's target features. `$rows` is the register-tile height suited to each instruction set.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $imp:ident
            { avx512: $r512:literal, avx2: $r2:literal, neon: $rneon:literal, baseline: $rbase:literal }
    ) => {
        $(#[$meta])*
        $vis unsafe fn $name(isa: $crate::cpu::simd::Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    // SAFETY: forwarded from the caller's contract.
                    unsafe { $imp::<$crate::cpu::simd::Fused, $r512>($($arg),*) }
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    // SAFETY: forwarded from the caller's contract.
                    unsafe { $imp::<$crate::cpu::simd::Fused, $r2>($($arg),*) }
                }
                match isa {
                    // SAFETY: `Isa::detect` returns these variants only on CPUs with the features.
                    $crate::cpu::simd::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::cpu::simd::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::cpu::simd::Isa::Baseline => {}
                }
                // SAFETY: forwarded from the caller's contract.
                unsafe { $imp::<$crate::cpu::simd::Split, $rbase>($($arg),*) }
            }
            #[cfg(target_arch = "aarch64")]
            {
                let _ = isa;
                // SAFETY: forwarded from the caller's contract.
                unsafe { $imp::<$crate::cpu::simd::Fused, $rneon>($($arg),*) }
            }
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            {
                let _ = isa;
                // SAFETY: forwarded from the caller's contract.
                unsafe { $imp::<$crate::cpu::simd::Split, $rbase>($($arg),*) }
            }
        }
    };
}
pub(crate) use multiversion;
