//! Reading a Linux framebuffer's geometry and pixel format (`FBIOGET_VSCREENINFO`,
//! `FBIOGET_FSCREENINFO`). The structs mirror `<linux/fb.h>`; the `libc` crate does not carry
//! them.

use super::pixel::{Channel, PixelLayout};
use std::os::fd::AsRawFd;

const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct FbBitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct FbVarScreeninfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: FbBitfield,
    green: FbBitfield,
    blue: FbBitfield,
    transp: FbBitfield,
    nonstd: u32,
    activate: u32,
    height: u32,
    width: u32,
    accel_flags: u32,
    pixclock: u32,
    left_margin: u32,
    right_margin: u32,
    upper_margin: u32,
    lower_margin: u32,
    hsync_len: u32,
    vsync_len: u32,
    sync: u32,
    vmode: u32,
    rotate: u32,
    colorspace: u32,
    reserved: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct FbFixScreeninfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    type_: u32,
    type_aux: u32,
    visual: u32,
    xpanstep: u16,
    ypanstep: u16,
    ywrapstep: u16,
    line_length: u32,
    mmio_start: libc::c_ulong,
    mmio_len: u32,
    accel: u32,
    capabilities: u16,
    reserved: [u16; 2],
}

/// Where and how to write pixels: what the writer needs, whether it came from the ioctls or
/// (in tests) was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FbGeometry {
    /// Visible resolution.
    pub width: u32,
    pub height: u32,
    /// Bytes per row in memory (may exceed `width * bytes_per_pixel`).
    pub line_length: u32,
    /// Offset of the visible area (panning/double buffering), in pixels.
    pub xoffset: u32,
    pub yoffset: u32,
    pub layout: PixelLayout,
}

impl FbGeometry {
    /// Byte offset of pixel (x, y) of the visible area.
    pub fn offset_of(&self, x: u32, y: u32) -> u64 {
        (self.yoffset + y) as u64 * self.line_length as u64
            + (self.xoffset + x) as u64 * self.layout.bytes_per_pixel() as u64
    }
}

/// Queries an open framebuffer device. Also returns the driver's id string for messages.
pub fn query(file: &std::fs::File) -> std::io::Result<(FbGeometry, String)> {
    let fd = file.as_raw_fd();
    let mut var = FbVarScreeninfo::default();
    // SAFETY: FBIOGET_VSCREENINFO fills exactly a `struct fb_var_screeninfo`, which `var` mirrors
    // with the same layout; the pointer is valid for the call.
    if unsafe { libc::ioctl(fd, FBIOGET_VSCREENINFO as _, &mut var as *mut FbVarScreeninfo) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid `FbFixScreeninfo` (plain integers); the ioctl fills a
    // `struct fb_fix_screeninfo`, which it mirrors.
    let mut fix: FbFixScreeninfo = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(fd, FBIOGET_FSCREENINFO as _, &mut fix as *mut FbFixScreeninfo) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let ch = |b: FbBitfield| Channel {
        offset: b.offset,
        length: b.length,
    };
    let id_len = fix.id.iter().position(|&b| b == 0).unwrap_or(fix.id.len());
    Ok((
        FbGeometry {
            width: var.xres,
            height: var.yres,
            line_length: fix.line_length,
            xoffset: var.xoffset,
            yoffset: var.yoffset,
            layout: PixelLayout {
                bits_per_pixel: var.bits_per_pixel,
                red: ch(var.red),
                green: ch(var.green),
                blue: ch(var.blue),
                transp: ch(var.transp),
            },
        },
        String::from_utf8_lossy(&fix.id[..id_len]).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_match_the_kernel_layout() {
        // Sizes from <linux/fb.h> on 64-bit Linux (fix: 80 bytes with two 8-byte longs).
        assert_eq!(std::mem::size_of::<FbVarScreeninfo>(), 160);
        let fix = if std::mem::size_of::<libc::c_ulong>() == 8 {
            80
        } else {
            68
        };
        assert_eq!(std::mem::size_of::<FbFixScreeninfo>(), fix);
    }

    #[test]
    fn a_regular_file_is_not_a_framebuffer() {
        let f = tempfile::tempfile().unwrap();
        assert!(query(&f).is_err());
    }

    #[test]
    fn offsets_follow_stride_and_panning() {
        let g = FbGeometry {
            width: 4,
            height: 2,
            line_length: 20,
            xoffset: 1,
            yoffset: 2,
            layout: PixelLayout::XRGB8888,
        };
        assert_eq!(g.offset_of(0, 0), 2 * 20 + 4);
        assert_eq!(g.offset_of(3, 1), 3 * 20 + 16);
    }
}
