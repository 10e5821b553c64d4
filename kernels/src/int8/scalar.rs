//! The scalar reference: the definition every int8 kernel must match exactly.

use super::{Operands, QGemmKernel};

pub const KERNEL: QGemmKernel = QGemmKernel {
    name: "scalar_qgemm_i8",
    mr: 1,
    nr: 4,
    k_align: 4,
    operands: Operands::Signed,
    micro,
    micro_1: None,
};

/// One 1 x 4 tile (see `MicroKernel`).
///
/// # Safety
/// As `MicroKernel`.
unsafe fn micro(k4: usize, a: *const i8, _lda: usize, b: *const i8, c: *mut i32) {
    const NR: usize = 4;
    // SAFETY: the caller gives one row of >= 4 * k4 bytes and a panel of k4 * NR * 4.
    let (a, b) = unsafe {
        (std::slice::from_raw_parts(a, 4 * k4), std::slice::from_raw_parts(b, k4 * NR * 4))
    };
    for j in 0..NR {
        let mut acc = 0i32;
        for s in 0..k4 {
            for t in 0..4 {
                acc += a[s * 4 + t] as i32 * b[(s * NR + j) * 4 + t] as i32;
            }
        }
        // SAFETY: c holds mr * nr = 4 values.
        unsafe { *c.add(j) = acc };
    }
}
