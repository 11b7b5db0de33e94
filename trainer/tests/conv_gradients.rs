//! The fast CPU convolution agrees with candle's own convolution and with finite differences,
//! forward and backward, for plain, strided, padded and depthwise layers.

use candle_core::{Device, Tensor, Var};
use sitfer_trainer::ops::{self, ConvImpl};

mod tensor_fixtures;
use tensor_fixtures::{max_rel_diff, rand};

struct Case {
    b: usize,
    c: usize,
    o: usize,
    hw: (usize, usize),
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
}

const CASES: [Case; 8] = [
    Case {
        b: 2,
        c: 3,
        o: 5,
        hw: (7, 6),
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    },
    Case {
        b: 2,
        c: 4,
        o: 6,
        hw: (9, 9),
        k: 3,
        stride: 2,
        pad: 1,
        groups: 1,
    },
    Case {
        b: 1,
        c: 3,
        o: 4,
        hw: (8, 7),
        k: 1,
        stride: 2,
        pad: 0,
        groups: 1,
    },
    Case {
        b: 2,
        c: 2,
        o: 3,
        hw: (10, 10),
        k: 7,
        stride: 2,
        pad: 3,
        groups: 1,
    },
    Case {
        b: 2,
        c: 6,
        o: 6,
        hw: (8, 9),
        k: 3,
        stride: 1,
        pad: 1,
        groups: 6,
    },
    Case {
        b: 2,
        c: 5,
        o: 5,
        hw: (11, 11),
        k: 5,
        stride: 2,
        pad: 2,
        groups: 5,
    },
    Case {
        b: 2,
        c: 5,
        o: 5,
        hw: (11, 10),
        k: 5,
        stride: 2,
        pad: 2,
        groups: 5,
    },
    Case {
        b: 1,
        c: 3,
        o: 4,
        hw: (8, 8),
        k: 1,
        stride: 2,
        pad: 0,
        groups: 1,
    },
];

/// Output and the gradients of sum(output * r) with respect to input and weight.
fn run(case: &Case, imp: ConvImpl) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = Var::from_tensor(&rand(&[case.b, case.c, case.hw.0, case.hw.1], 1)).unwrap();
    let w = Var::from_tensor(&rand(&[case.o, case.c / case.groups, case.k, case.k], 2)).unwrap();
    let y = ops::conv2d_with(imp, x.as_tensor(), w.as_tensor(), case.pad, case.stride, case.groups).unwrap();
    let r = rand(y.dims(), 3);
    let loss = (&y * &r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (flat(&y), flat(grads.get(&x).unwrap()), flat(grads.get(&w).unwrap()))
}

#[test]
fn fast_conv_matches_candle_forward_and_backward() {
    for (i, case) in CASES.iter().enumerate() {
        if case.stride > 1 && case.hw.0 != case.hw.1 {
            // candle 0.11's conv2d backward derives the transposed convolution's output padding
            // from the height alone and fails on such inputs; finite differences cover them.
            continue;
        }
        let (y1, gx1, gw1) = run(case, ConvImpl::Fast);
        let (y2, gx2, gw2) = run(case, ConvImpl::Candle);
        for (what, a, b) in [
            ("output", &y1, &y2),
            ("grad input", &gx1, &gx2),
            ("grad weight", &gw1, &gw2),
        ] {
            let d = max_rel_diff(a, b);
            assert!(d < 1e-4, "case {i}: {what} differs from candle by {d} (relative)");
        }
    }
}

#[test]
fn fast_conv_gradients_match_finite_differences() {
    for (i, case) in CASES.iter().enumerate() {
        let x0 = rand(&[case.b, case.c, case.hw.0, case.hw.1], 11)
            .to_dtype(candle_core::DType::F64)
            .unwrap();
        let w0 = rand(&[case.o, case.c / case.groups, case.k, case.k], 12)
            .to_dtype(candle_core::DType::F64)
            .unwrap();
        // The fast path is f32; differences are taken in f32 around f64-rounded points.
        let f = |x: &Tensor, w: &Tensor| -> f64 {
            let x = x.to_dtype(candle_core::DType::F32).unwrap();
            let w = w.to_dtype(candle_core::DType::F32).unwrap();
            let y = ops::conv2d_with(ConvImpl::Fast, &x, &w, case.pad, case.stride, case.groups).unwrap();
            let r = rand(y.dims(), 13);
            (y * r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let (_, gx, gw) = {
            let x = Var::from_tensor(&x0.to_dtype(candle_core::DType::F32).unwrap()).unwrap();
            let w = Var::from_tensor(&w0.to_dtype(candle_core::DType::F32).unwrap()).unwrap();
            let y = ops::conv2d_with(
                ConvImpl::Fast,
                x.as_tensor(),
                w.as_tensor(),
                case.pad,
                case.stride,
                case.groups,
            )
            .unwrap();
            let r = rand(y.dims(), 13);
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (flat(&y), flat(g.get(&x).unwrap()), flat(g.get(&w).unwrap()))
        };
        let eps = 1e-2;
        for (which, base, analytic) in [(0, &x0, &gx), (1, &w0, &gw)] {
            let n = base.elem_count();
            // Probe a spread of coordinates, including borders.
            for j in (0..n).step_by((n / 7).max(1)).chain([n - 1]) {
                let mut v = base.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                v[j] += eps;
                let plus = Tensor::from_vec(v.clone(), base.dims(), &Device::Cpu).unwrap();
                v[j] -= 2.0 * eps;
                let minus = Tensor::from_vec(v, base.dims(), &Device::Cpu).unwrap();
                let (fp, fm) = if which == 0 {
                    (f(&plus, &w0), f(&minus, &w0))
                } else {
                    (f(&x0, &plus), f(&x0, &minus))
                };
                let numeric = (fp - fm) / (2.0 * eps);
                let a = analytic[j] as f64;
                assert!(
                    (numeric - a).abs() <= 2e-3 * (1.0 + a.abs()),
                    "case {i}: {} grad[{j}] analytic {a} vs numeric {numeric}",
                    if which == 0 { "input" } else { "weight" }
                );
            }
        }
    }
}
