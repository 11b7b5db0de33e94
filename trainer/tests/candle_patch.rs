//! The patched candle backward (trainer/vendor/candle-core/PATCH.md): gradients that reach a
//! node along several paths still add up, the first one is no longer added to zeros.

use candle_core::{Device, Tensor, Var};

fn v(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn gradients_along_several_paths_add_up() {
    let x = Var::new(&[1.5f32, -2.0, 3.0], &Device::Cpu).unwrap();
    // y = x·x + 3x + x  →  dy/dx = 2x + 4.
    let y = ((x.as_tensor() * x.as_tensor()).unwrap() + (x.as_tensor() * 3.0).unwrap() + x.as_tensor()).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(v(g.get(&x).unwrap()), vec![7.0, 0.0, 10.0]);
}

#[test]
fn a_gradient_shared_by_two_inputs_is_not_aliased_into_either() {
    let a = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    let b = Var::new(&[3f32, 4.0], &Device::Cpu).unwrap();
    // s = a + b hands the same gradient to both; b gets a second contribution from b·b.
    let s = (a.as_tensor() + b.as_tensor()).unwrap();
    let y = (s.sum_all().unwrap() + (b.as_tensor() * b.as_tensor()).unwrap().sum_all().unwrap()).unwrap();
    let g = y.backward().unwrap();
    assert_eq!(v(g.get(&a).unwrap()), vec![1.0, 1.0]);
    assert_eq!(v(g.get(&b).unwrap()), vec![7.0, 9.0]);
}

#[test]
fn strided_first_gradients_are_read_correctly() {
    // The gradient reaching w through a transpose is a strided view; a matmul reads it.
    let w = Var::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu).unwrap();
    let x = Tensor::new(&[[1f32, 0.0], [0.0, 2.0]], &Device::Cpu).unwrap();
    let y = x.matmul(w.as_tensor()).unwrap().t().unwrap(); // [3, 2]
    let r = Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &Device::Cpu).unwrap();
    let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    // d/dw Σ (x w)ᵀ ⊙ r = xᵀ rᵀ.
    assert_eq!(v(g.get(&w).unwrap()), vec![1.0, 3.0, 5.0, 4.0, 8.0, 12.0]);
}
