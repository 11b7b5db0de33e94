//! The kernels of [`super::nhwc`] against a plain convolution, whole and in bands of rows (as the
//! threads of [`super::yunet_exec`] split them), with and without fused multiply-add.

use super::nhwc::*;

/// Each kernel over every vector type this CPU runs: `$f!(L, K)` for plain floats and SSE2 or
/// NEON, and AVX2 + FMA where the CPU has it (inside a function compiled for it).
macro_rules! each_lanes {
    ($f:ident) => {{
        $f!(f32, 16);
        #[cfg(target_arch = "x86_64")]
        {
            $f!(super::nhwc_lanes::Sse, 4);
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: checked just above.
                unsafe {
                    with_avx2(|| {
                        $f!(super::nhwc_lanes::Avx, 2);
                    })
                };
            }
        }
        #[cfg(target_arch = "aarch64")]
        $f!(super::nhwc_lanes::Neon, 4);
    }};
}

/// Runs `f` from code compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn with_avx2(f: impl FnOnce()) {
    f()
}

/// Plain NHWC reference convolution (any group), written for clarity, not speed.
#[allow(clippy::too_many_arguments)]
fn reference_conv(
    x: &[f32],
    s: Shape,
    w_oihw: &[f32],
    bias: &[f32],
    k: usize,
    stride: usize,
    pad: usize,
    group: usize,
) -> (Vec<f32>, Shape) {
    let n = bias.len();
    let g = ConvGeom { k, stride, pad };
    let os = Shape {
        h: g.out_side(s.h),
        w: g.out_side(s.w),
        c: n,
    };
    let (cin_g, cout_g) = (s.c / group, n / group);
    let mut out = vec![0f32; os.len()];
    for oy in 0..os.h {
        for ox in 0..os.w {
            for o in 0..n {
                let grp = o / cout_g;
                let mut acc = bias[o];
                for i in 0..cin_g {
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * stride + ky) as isize - pad as isize;
                            let ix = (ox * stride + kx) as isize - pad as isize;
                            if iy < 0 || ix < 0 || iy as usize >= s.h || ix as usize >= s.w {
                                continue;
                            }
                            let xv = x[(iy as usize * s.w + ix as usize) * s.c + grp * cin_g + i];
                            acc += xv * w_oihw[((o * cin_g + i) * k + ky) * k + kx];
                        }
                    }
                }
                out[(oy * os.w + ox) * n + o] = acc;
            }
        }
    }
    (out, os)
}

/// Deterministic values in [-1, 1) (no rand dependency in the runtime).
fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn relu_of(v: &[f32]) -> Vec<f32> {
    v.iter().map(|v| v.max(0.0)).collect()
}

/// Runs `kernel(y0, band)` over `os`'s rows: whole, and cut into bands of 1, 2 and the rest rows
/// (unequal, as the threads' last band is). Both results, which must agree.
fn whole_and_banded(os: Shape, kernel: impl Fn(usize, &mut [f32])) -> Vec<f32> {
    let mut whole = vec![f32::NAN; os.len()];
    kernel(0, &mut whole);
    let mut banded = vec![f32::NAN; os.len()];
    let (mut y, mut rows) = (0, 1);
    while y < os.h {
        let n = rows.min(os.h - y);
        kernel(y, &mut banded[y * os.row()..(y + n) * os.row()]);
        y += n;
        rows += 1;
    }
    assert_eq!(whole, banded, "bands differ from the whole map ({os:?})");
    whole
}

/// Odd sizes, a single column and row, and the channel counts YuNet has (1, 4, 10 in the heads;
/// 16, 32, 64 in the backbone) beside ones it does not (3, 20).
const SHAPES: [(usize, usize, usize); 9] = [
    (7, 5, 16),
    (4, 9, 3),
    (6, 6, 32),
    (3, 11, 64),
    (5, 13, 10),
    (9, 7, 1),
    (2, 10, 4),
    (1, 1, 20),
    (6, 1, 16),
];

#[test]
fn depthwise_matches_a_plain_convolution() {
    for &(h, w, c) in &SHAPES {
        let s = Shape { h, w, c };
        let x = noise(s.len(), 1 + c as u32);
        // ONNX weights [c][1][3][3], ours [tap][c]
        let wd = noise(9 * c, 2);
        let b = noise(c, 3);
        let ours: Vec<f32> = (0..9)
            .flat_map(|t| (0..c).map(move |ch| (t, ch)))
            .map(|(t, ch)| wd[ch * 9 + t])
            .collect();
        let (want, _) = reference_conv(&x, s, &wd, &b, 3, 1, 1, c);
        let want_relu = relu_of(&want);
        macro_rules! check {
            ($l:ty, $k:literal) => {
                let got = whole_and_banded(s, |y0, d| depthwise3x3::<$l>(&x, s, &ours, &b, false, y0, d));
                assert!(
                    max_diff(&got, &want) < 1e-5,
                    "depthwise {h}x{w}x{c}, {}",
                    stringify!($l)
                );
                let got = whole_and_banded(s, |y0, d| depthwise3x3::<$l>(&x, s, &ours, &b, true, y0, d));
                assert!(max_diff(&got, &want_relu) < 1e-5, "depthwise + relu {h}x{w}x{c}");
            };
        }
        each_lanes!(check);
    }
}

#[test]
fn conv_matches_a_plain_convolution() {
    for &(h, w, c) in &SHAPES {
        let s = Shape { h, w, c };
        let x = noise(s.len(), 1 + c as u32);
        // 1x1 (YuNet's pointwise), the 3x3/2 stem's geometry, and a 3x3/1 for the interior
        // column range; output widths YuNet has and others (remainder blocks of 16)
        for (k, stride, pad) in [(1, 1, 0), (3, 2, 1), (3, 1, 1)] {
            for n in [1, 4, 10, 16, 32, 64, 7, 20] {
                let g = ConvGeom { k, stride, pad };
                let wf = noise(n * c * k * k, 4 + n as u32);
                let bf = noise(n, 5);
                let (want, os) = reference_conv(&x, s, &wf, &bf, k, stride, pad, 1);
                let ours = conv_weights(&wf, c, n, k);
                let what = format!("conv {k}x{k}/{stride} {h}x{w}x{c} to {n}");
                let want_relu = relu_of(&want);
                macro_rules! check {
                    ($l:ty, $k:literal) => {
                        let got = whole_and_banded(os, |y0, d| {
                            conv::<$l, $k>(&x, s, g, &ours, &bf, false, y0, d)
                        });
                        assert!(max_diff(&got, &want) < 1e-4, "{what}, {}", stringify!($l));
                        let got = whole_and_banded(os, |y0, d| {
                            conv::<$l, $k>(&x, s, g, &ours, &bf, true, y0, d)
                        });
                        assert!(max_diff(&got, &want_relu) < 1e-4, "{what} + relu");
                    };
                }
                each_lanes!(check);
            }
        }
    }
}

#[test]
fn pool_and_upsample_move_the_right_pixels() {
    let s = Shape { h: 5, w: 4, c: 2 };
    let x: Vec<f32> = (0..s.len()).map(|i| i as f32).collect();
    let pooled = Shape { h: 2, w: 2, c: 2 };
    let p = whole_and_banded(pooled, |y0, d| maxpool2(&x, s, y0, d));
    // the max of each 2x2 block is its bottom-right pixel here; row 4 is dropped
    assert_eq!(p, vec![10.0, 11.0, 14.0, 15.0, 26.0, 27.0, 30.0, 31.0]);
    let small = Shape { h: 1, w: 2, c: 2 };
    let up = Shape { h: 2, w: 4, c: 2 };
    let u = whole_and_banded(up, |y0, d| upsample2(&[1.0, 2.0, 3.0, 4.0], small, y0, d));
    assert_eq!(u, vec![1., 2., 1., 2., 3., 4., 3., 4., 1., 2., 1., 2., 3., 4., 3., 4.]);
}
