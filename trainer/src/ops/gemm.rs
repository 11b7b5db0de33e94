//! Row-major f32 matrix products on slices, through the `gemm` crate (the kernel candle's own
//! CPU matmul uses), single-threaded: the training ops split work across images themselves and
//! call this once per chunk on each rayon thread, so a nested parallel gemm would only contend.

/// A strided view of a row-major or transposed matrix: element (r, c) is at `r * rs + c * cs`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major `cols x rows` matrix, as a `rows x cols` view.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: 1,
            cs: rows,
        }
    }

    fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "gemm: {what} view exceeds its slice");
        }
    }
}

/// `dst = a · b` (`accumulate` false) or `dst += a · b`, with `dst` row-major `a.rows x b.cols`.
pub fn matmul(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(dst.len() >= m * n, "gemm: destination too small");
    a.check("left");
    b.check("right");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: every index the kernel touches was bounds-checked above: dst holds m x n with row
    // stride n; a and b were checked against their slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: Mat, b: Mat) -> Vec<f32> {
        let mut out = vec![0f32; a.rows * b.cols];
        for r in 0..a.rows {
            for c in 0..b.cols {
                out[r * b.cols + c] = (0..a.cols)
                    .map(|i| a.data[r * a.rs + i * a.cs] * b.data[i * b.rs + c * b.cs])
                    .sum();
            }
        }
        out
    }

    #[test]
    fn strided_products_match_the_definition() {
        let a: Vec<f32> = (0..35).map(|v| (v as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..35).map(|v| (v as f32 * 0.11).cos()).collect();
        // 5x7 · 7x5 row-major, then 7x5ᵀ · 7x5 (a transposed view).
        for (am, bm) in [
            (Mat::rows(&a, 5, 7), Mat::rows(&b, 7, 5)),
            (Mat::transposed(&a, 5, 7), Mat::rows(&b, 7, 5)),
            (Mat::rows(&a, 5, 7), Mat::transposed(&b, 7, 5)),
        ] {
            let want = naive(am, bm);
            let mut got = vec![1f32; 25];
            matmul(&mut got, am, bm, false);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{g} vs {w}");
            }
            matmul(&mut got, am, bm, true);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - 2.0 * w).abs() < 1e-4, "{g} vs {}", 2.0 * w);
            }
        }
    }
}
