use polyhe_passes::*;
use std::time::Instant;
#[test]
fn table() {
    let relu = |x: f64| x.max(0.0);
    let iv = Interval::new(-50.0, 50.0).unwrap();
    for d in [63, 127, 255] {
        let t = Instant::now();
        let c = chebyshev_fit(&relu, iv, d, ErrorKind::Absolute).unwrap();
        let t1 = t.elapsed();
        let r = remez(&relu, iv, d, ErrorKind::Absolute).unwrap();
        eprintln!(
            "relu d={d}: cheb {:?} {:.3e} remez {:?} {:.3e} {:?}",
            t1,
            c.max_error,
            t.elapsed() - t1,
            r.max_error,
            r.method
        );
    }
    let t = Instant::now();
    let c = fit_relu_composite(iv, 1e-2, 30).unwrap();
    eprintln!("composite {:?} {:?}", t.elapsed(), c.degrees());
}
