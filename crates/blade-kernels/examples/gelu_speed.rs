//! Times the GELU kernels against a scalar `erf` GELU (what burn-flex computes) on one pass's
//! feed-forward activations, `[5120 x 256]`: `cargo run -p blade-kernels --example gelu_speed`.

use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n = 5120 * 256;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 20_001) as f32 / 2_000.0 - 5.0)
        .collect();
    let mut out = vec![0.0f32; n];
    let scalar = |x: &[f32], out: &mut [f32]| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = 0.5 * v * (1.0 + libm::erff(v / std::f32::consts::SQRT_2));
        }
    };
    let time = |f: &mut dyn FnMut()| {
        f();
        median(
            (0..11)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    };
    let s = time(&mut || scalar(&x, &mut out));
    let k = time(&mut || blade_kernels::gelu_into(&x, &mut out));
    let mut g = vec![1.0f32; n];
    let b = time(&mut || blade_kernels::gelu_backward_in_place(&x, &mut g));
    println!("GELU over [5120x256]: scalar erf {s:.2} ms, kernel {k:.2} ms ({:.1}x); backward kernel {b:.2} ms", s / k);
}
