//! Every int8 kernel against the scalar reference, exactly (integer sums), on random
//! shapes with ragged edges in every dimension; and the whole quantized product
//! against the f32 one, within what int8 rounding allows.

use proptest::prelude::*;

use super::*;

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

fn random_i8(len: usize, seed: u64) -> Vec<i8> {
    let mut r = xorshift(seed);
    // The full range the quantizers produce, extremes included.
    (0..len).map(|_| ((r() % 255) as u8 as i8).max(-127)).collect()
}

fn random_f32(len: usize, seed: u64) -> Vec<f32> {
    let mut r = xorshift(seed);
    (0..len).map(|_| (r() >> 41) as f32 / (1u64 << 23) as f32 * 4.0 - 2.0).collect()
}

fn reference_i32(x: &[i8], w: &[i8], m: usize, n: usize, k: usize) -> Vec<i32> {
    let mut out = vec![0i32; m * n];
    for r in 0..m {
        for c in 0..n {
            out[r * n + c] = (0..k).map(|t| x[r * k + t] as i32 * w[c * k + t] as i32).sum();
        }
    }
    out
}

/// The i32 sums alone (`xq · Wᵀ` before scales, each row's zero point times the
/// packed column's sum taken off, in integers), for testing kernels exactly.
fn gemm_i32(kernel: &QGemmKernel, xq: &QuantizedRows, w: &PackedWeights) -> Vec<i32> {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let mut out = vec![0i32; xq.m * w.n];
    let mut tile = vec![0i32; mr * nr];
    for p in 0..w.n.div_ceil(nr) {
        let b = &w.data[p * w.kp * nr..(p + 1) * w.kp * nr];
        // Panel layout [k4][nr][4]: column j's bytes are at (s * nr + j) * 4 + 0..4.
        let colsum = |j: usize| {
            (0..w.kp / 4)
                .flat_map(|s| &b[(s * nr + j) * 4..(s * nr + j) * 4 + 4])
                .map(|&v| v as i32)
                .sum::<i32>()
        };
        for r0 in (0..xq.m).step_by(mr) {
            // SAFETY: as in run_panels (mod.rs).
            unsafe {
                kernel.tile(
                    mr.min(xq.m - r0),
                    w.kp / 4,
                    xq.data.as_ptr().add(r0 * xq.kp),
                    xq.kp,
                    b.as_ptr(),
                    tile.as_mut_ptr(),
                )
            };
            for r in 0..mr.min(xq.m - r0) {
                for j in 0..nr.min(w.n - p * nr) {
                    out[(r0 + r) * w.n + p * nr + j] =
                        tile[r * nr + j] - xq.zeros[r0 + r] * colsum(j);
                }
            }
        }
    }
    out
}

/// x as `quantize_rows` would lay it out for `kernel`, from raw int8 values.
fn rows_for(kernel: &QGemmKernel, x: &[i8], m: usize, k: usize) -> QuantizedRows {
    let kp = round_up(k.max(1), kernel.k_align);
    let mp = round_up(m.max(1), kernel.mr);
    let mut data = vec![0i8; mp * kp];
    for r in 0..m {
        for (d, &v) in data[r * kp..r * kp + k].iter_mut().zip(&x[r * k..(r + 1) * k]) {
            *d = (v as i32 + kernel.operands.x_offset()) as u8 as i8;
        }
    }
    QuantizedRows {
        data,
        scales: vec![1.0; m],
        zeros: vec![kernel.operands.x_offset(); m],
        m,
        mp,
        kp,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn every_int8_kernel_matches_the_scalar_reference_exactly(
        m in 1usize..20, n in 1usize..70, k in 1usize..100, seed in any::<u64>(),
    ) {
        let x = random_i8(m * k, seed);
        let w = random_i8(n * k, seed ^ 0x9e37_79b9_7f4a_7c15);
        for kernel in candidates() {
            // The reference on the weights the kernel takes (7-bit ones for UnsignedX).
            let want = reference_i32(&x, &kernel.operands.weights(&w, &vec![1.0; n]).0, m, n, k);
            let packed = PackedWeights::pack(&kernel, &w, n, k, vec![1.0; n], None);
            let got = gemm_i32(&kernel, &rows_for(&kernel, &x, m, k), &packed);
            prop_assert_eq!(&got, &want, "{} on m {} n {} k {}", kernel.name, m, n, k);
        }
    }

    #[test]
    fn the_quantized_product_is_close_to_the_f32_one(
        m in 1usize..12, n in 1usize..40, k in 1usize..300, seed in any::<u64>(),
    ) {
        let x = random_f32(m * k, seed);
        let wf = random_f32(n * k, seed ^ 0x5555);
        let bias = random_f32(n, seed ^ 0xaaaa);
        let (wq, scales) = quantize_weights(&wf, n, k);
        // Per row, and with a static scale that covers |x| <= 2 (as calibration
        // would find it): both within half a step of 2 / 127.
        for (kernel, xs) in candidates()
            .into_iter()
            .flat_map(|k| [(k, XScale::PerRow), (k, XScale::PerRowSymmetric), (k, XScale::Static(2.0 / 127.0))])
        {
            let packed = PackedWeights::pack(&kernel, &wq, n, k, scales.clone(), Some(bias.clone()));
            let mut y = vec![f32::NAN; m * n];
            qmatmul(&kernel, &x, m, &packed, xs, &mut y);
            for r in 0..m {
                for c in 0..n {
                    let exact: f32 = (0..k).map(|t| x[r * k + t] * wf[c * k + t]).sum::<f32>() + bias[c];
                    // |x|, |w| <= 2; x is within half a step (max/254) of its value,
                    // w too, plus half a step of the 7-bit grid where the kernel
                    // requantizes: a sum of k products is off by at most
                    // k * 2 * (x error + w error).
                    let x_err = 2.0 / 254.0;
                    let w_err = 2.0 / 254.0 + if kernel.operands.w_max() < 127 { 2.0 / (2.0 * kernel.operands.w_max() as f32) } else { 0.0 };
                    let bound = k as f32 * 2.0 * (x_err + w_err) + 1e-4;
                    prop_assert!((y[r * n + c] - exact).abs() <= bound,
                        "{} {xs:?}: y[{r},{c}] {} vs {exact} (m {m} n {n} k {k})", kernel.name, y[r * n + c]);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn layers_fused_by_concat_give_each_layer_its_own_product_exactly(
        m in 1usize..20, k in 1usize..100, panels in proptest::collection::vec(0usize..3, 1..4), ragged in 0usize..40,
        seed in any::<u64>(),
    ) {
        let x = random_f32(m * k, seed);
        for kernel in candidates() {
            // Whole panels for all but the last layer, which may be ragged.
            let mut widths: Vec<usize> = panels.iter().map(|p| p * kernel.nr).collect();
            widths.push(ragged);
            let layers: Vec<PackedWeights> = widths
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let (wq, scales) = quantize_weights(&random_f32(n * k, seed ^ ((i as u64 + 1) * 0x9e37)), n, k);
                    let bias = (i % 2 == 0).then(|| random_f32(n, seed ^ 0xb1a5 ^ i as u64));
                    PackedWeights::pack(&kernel, &wq, n, k, scales, bias)
                })
                .collect();
            let fused = PackedWeights::concat(&layers.iter().collect::<Vec<_>>()).expect("whole panels fuse");
            prop_assert_eq!(fused.parts(), &widths[..]);
            let mut got: Vec<Vec<f32>> = widths.iter().map(|n| vec![f32::NAN; m * n]).collect();
            qmatmul_parts(&kernel, &x, m, &fused, XScale::PerRow, &mut got.iter_mut().map(|y| &mut y[..]).collect::<Vec<_>>());
            for (layer, got) in layers.iter().zip(&got) {
                let mut want = vec![f32::NAN; m * layer.n];
                qmatmul(&kernel, &x, m, layer, XScale::PerRow, &mut want);
                // Same sums, same epilogue: bit for bit.
                prop_assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{} widths {:?} m {} k {}", kernel.name, &widths, m, k);
            }
        }
    }
}

#[test]
fn concat_refuses_layers_that_would_share_a_panel_or_differ_in_k() {
    let kernel = FAMILY.chosen();
    let layer = |n: usize, k: usize| {
        let (wq, scales) = quantize_weights(&random_f32(n * k, 7), n, k);
        PackedWeights::pack(&kernel, &wq, n, k, scales, None)
    };
    let (whole, ragged) = (layer(kernel.nr, 16), layer(kernel.nr + 1, 16));
    assert!(PackedWeights::concat(&[&whole, &ragged]).is_some(), "a ragged last layer fuses");
    assert!(
        PackedWeights::concat(&[&ragged, &whole]).is_none(),
        "a ragged layer before another would straddle a panel"
    );
    assert!(PackedWeights::concat(&[&whole, &layer(kernel.nr, 20)]).is_none(), "different K");
    assert!(PackedWeights::concat(&[]).is_none());
}

#[test]
fn quantize_rows_keeps_zero_and_extremes() {
    let x = [0.0, 1.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0, f32::NAN, 3.0, 0.0, 0.0];
    let q = quantize_rows(&x, 3, 4, 4, 2, 0, XScale::PerRowSymmetric);
    assert_eq!(&q.data[0..4], &[0, 127, -127, 64]);
    assert_eq!(&q.data[4..8], &[0, 0, 0, 0], "a row of zeros stays zeros");
    assert_eq!(q.mp, 4, "rows padded to mr");
    assert_eq!(&q.data[12..16], &[0, 0, 0, 0], "padding rows are zero");
    assert!((q.scales[0] - 1.0 / 127.0).abs() < 1e-9);
    assert_eq!(&q.data[8..12], &[0, 127, 0, 0], "NaN quantizes to 0, not to an extreme");
    // As u8 for Operands::UnsignedX: + 128, K padding still 0.
    let q = quantize_rows(&x[..4], 1, 4, 8, 1, 128, XScale::PerRowSymmetric);
    assert_eq!(q.data.iter().map(|&v| v as u8).collect::<Vec<_>>(), [128, 255, 1, 192, 0, 0, 0, 0]);
    // A row of zeros and one with an infinity are 0 (+ 128) too, not skipped.
    let q =
        quantize_rows(&[0.0, 0.0, f32::INFINITY, 1.0], 2, 2, 2, 1, 128, XScale::PerRowSymmetric);
    assert_eq!(q.data.iter().map(|&v| v as u8).collect::<Vec<_>>(), [128, 128, 128, 128]);
}

#[test]
fn quantize_rows_rounds_to_nearest_ties_to_even_like_onnx() {
    // Scale 1 (max 127): the values are the quantized ones before rounding.
    let x = [127.0, -127.0, 2.5, 3.5, -2.5, -0.5, 0.49, 126.51, -126.5, 1.5, 0.0, -1.49];
    // Four times over: the first 32 go through the SIMD path where there is one.
    let x: Vec<f32> = x.iter().copied().cycle().take(48).collect();
    let q = quantize_rows(&x, 1, x.len(), x.len(), 1, 0, XScale::PerRowSymmetric);
    let want = [127, -127, 2, 4, -2, 0, 0, 127, -126, 2, 0, -1];
    assert_eq!(q.data, want.iter().copied().cycle().take(48).collect::<Vec<i8>>());
    // Against the library's own rounding on many random values.
    let x = random_f32(4096, 7);
    let inv = 127.0 / x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let q = quantize_rows(&x, 1, x.len(), x.len(), 1, 0, XScale::PerRowSymmetric);
    for (&v, &got) in x.iter().zip(&q.data) {
        assert_eq!(got as f32, (v * inv).round_ties_even(), "x {v}");
    }
}

#[test]
fn quantize_rows_simd_matches_the_portable_code_on_ragged_rows_with_nan() {
    // quantize_rows takes AVX2's row quantizer where the CPU has it. Static scales:
    // one that fits (max |x| is 2), one that clamps about half the values.
    for xs in [
        XScale::PerRow,
        XScale::PerRowSymmetric,
        XScale::Static(2.5 / 127.0),
        XScale::Static(1.0 / 127.0),
    ] {
        for k in [1, 7, 16, 31, 32, 33, 64, 100, 768] {
            for x_offset in [0, 128] {
                let m = 3;
                let mut x = random_f32(m * k, k as u64);
                x[k / 2] = f32::NAN; // row 0
                x[k + k / 3] *= 1e6; // row 1: one outlier
                x[2 * k + k / 4] = f32::NEG_INFINITY; // row 2
                let kp = k.next_multiple_of(4);
                let q = quantize_rows(&x, m, k, kp, 1, x_offset, xs);
                let (mut data, mut scales, mut zeros) =
                    (vec![0i8; m * kp], vec![0f32; m], vec![0i32; m]);
                quantize_into(&x, k, &mut data, kp, &mut scales, &mut zeros, x_offset, xs);
                assert_eq!(
                    (&q.data, &q.scales, &q.zeros),
                    (&data, &scales, &zeros),
                    "k {k} offset {x_offset} {xs:?}"
                );
            }
        }
    }
}

#[test]
fn asymmetric_rows_spend_their_steps_on_the_range_the_row_has() {
    // A GELU output's row: down to about -0.17, up to 5.
    let k = 100;
    let mut x: Vec<f32> =
        (0..k).map(|i| -0.17 + 5.17 * ((i * 37 % k) as f32 / (k - 1) as f32)).collect();
    x[3] = 0.0;
    x[7] = f32::NAN;
    for x_offset in [0, 128] {
        let q = quantize_rows(&x, 1, k, k, 1, x_offset, XScale::PerRow);
        let sym = quantize_rows(&x, 1, k, k, 1, x_offset, XScale::PerRowSymmetric);
        // 254 steps over [-0.17, 5] instead of over [-5, 5].
        assert!((q.scales[0] - 5.17 / 254.0).abs() < 1e-6, "{}", q.scales[0]);
        assert!(q.scales[0] < 0.52 * sym.scales[0]);
        let zero = q.zeros[0];
        for (i, (&v, &b)) in x.iter().zip(&q.data).enumerate() {
            let stored = if x_offset == 0 { b as i32 } else { b as u8 as i32 };
            assert!((-127 + x_offset..=127 + x_offset).contains(&stored), "{stored}");
            let back = (stored - zero) as f32 * q.scales[0];
            if v.is_nan() {
                assert_eq!(back, 0.0, "NaN becomes 0");
            } else {
                assert!((back - v).abs() <= q.scales[0] / 2.0 + 1e-6, "x[{i}] {v} -> {back}");
            }
        }
        let stored0 = if x_offset == 0 { q.data[3] as i32 } else { q.data[3] as u8 as i32 };
        assert_eq!(stored0, zero, "an exact 0 stays exactly 0");
    }
    // All positive: 0 is in the range, on -127.
    let q = quantize_rows(&[1.0, 2.0, 3.0, 4.0], 1, 4, 4, 1, 0, XScale::PerRow);
    assert_eq!(q.zeros[0], -127);
    // Range [0, 4] over 254 steps: x · 63.5 - 127, ties to even.
    assert_eq!(q.data, [-64, 0, 64, 127]);
    let back: Vec<f32> =
        q.data.iter().map(|&b| (b as i32 - q.zeros[0]) as f32 * q.scales[0]).collect();
    for (b, v) in back.iter().zip([1.0, 2.0, 3.0, 4.0]) {
        assert!((b - v).abs() <= q.scales[0] / 2.0 + 1e-6, "{b} vs {v}");
    }
    assert_eq!(*q.data.last().unwrap(), 127, "the row's max on the top step");
}

#[test]
fn a_static_scale_clamps_to_127_steps_and_never_gives_minus_128() {
    let x = [0.5, -0.5, 1.0, -1.0, 3.0, -3.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.25];
    // Forty of them: the first 32 go through the SIMD path where there is one.
    let x: Vec<f32> = x.iter().copied().cycle().take(40).collect();
    let q = quantize_rows(&x, 1, x.len(), x.len(), 1, 0, XScale::Static(1.0 / 127.0));
    let want = [64, -64, 127, -127, 127, -127, 127, -127, 0, 32];
    assert_eq!(q.data, want.iter().copied().cycle().take(40).collect::<Vec<i8>>());
    assert_eq!(q.scales, [1.0 / 127.0], "the row keeps the static scale");
    // As u8 (+ 128): 1..=255, never 0.
    let q = quantize_rows(&x, 1, x.len(), x.len(), 1, 128, XScale::Static(1.0 / 127.0));
    assert!(q.data.iter().all(|&v| v as u8 >= 1), "{:?}", q.data);
    // Every row gets the same scale, whatever its own range.
    let q = quantize_rows(&[0.1, 0.2, 10.0, 20.0], 2, 2, 4, 1, 0, XScale::Static(0.1));
    assert_eq!(&q.data[..2], &[1, 2]);
    assert_eq!(&q.data[4..6], &[100, 127]);
}

#[test]
fn weights_requantized_to_7_bits_round_to_nearest_and_keep_their_scale() {
    let w = [127i8, -127, 1, -1, 0, 2, 3, -3, 100];
    let (q, s) = Operands::UnsignedX { w_max: 64 }.weights(&w, &[1.0]);
    // round(v * 64 / 127), half away from zero
    assert_eq!(q, [64, -64, 1, -1, 0, 1, 2, -2, 50]);
    assert!((s[0] - 127.0 / 64.0).abs() < 1e-6);
    assert_eq!(Operands::Signed.weights(&w, &[1.0]), (w.to_vec(), vec![1.0]));
}

#[test]
fn the_best_int8_kernel_uses_simd_where_the_cpu_has_it() {
    let names: Vec<_> = candidates().iter().map(|k| k.name).collect();
    eprintln!("int8 kernels on this CPU: {names:?}");
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let best = candidates().last().unwrap().name;
        if has!("avx512f") && has!("avx512vnni") {
            assert_eq!(best, "x86_64_avx512vnni_qgemm_u8i8_8x32");
        } else if has!("avx2") && has!("avxvnni") {
            assert_eq!(best, "x86_64_avxvnni_qgemm_u8i8_6x16");
        } else if has!("avx2") {
            assert_eq!(best, "x86_64_avx2_qgemm_u8i7_4x16");
        }
        // Where the run is meant to cover a kernel (the GPU host for VNNI), a CPU that
        // lacks it must fail here rather than test the other kernels only.
        if let Ok(want) = std::env::var("OWLET_EXPECT_INT8_KERNEL") {
            assert_eq!(best, want, "OWLET_EXPECT_INT8_KERNEL");
        }
    }
    #[cfg(target_arch = "aarch64")]
    assert_eq!(
        candidates().last().unwrap().name,
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            "aarch64_sdot_qgemm_i8_4x16"
        } else {
            "aarch64_neon_qgemm_i8_2x16"
        }
    );
}
