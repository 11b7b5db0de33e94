//! Shape arithmetic of a square-kernel 2-D convolution (dilation 1).

/// Input channels, input size, kernel, stride and symmetric padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.out_h() * self.out_w()
    }
    /// Length of one im2col row: channels x k x k.
    pub fn patch(&self) -> usize {
        self.channels * self.k * self.k
    }
    /// Input coordinate of output `o` and kernel tap `t`, if inside the image.
    #[inline]
    pub fn source(o: usize, t: usize, stride: usize, pad: usize, n: usize) -> Option<usize> {
        let v = (o * stride + t) as isize - pad as isize;
        (v >= 0 && (v as usize) < n).then_some(v as usize)
    }
}
