use polyhe_passes::*;
use std::time::Instant;
#[test]
fn table() {
    let t = Instant::now();
    let _ = fit_inv_sqrt(Interval::new(0.365, 149.5).unwrap(), &InverseOptions::new(1e-3)).unwrap();
    eprintln!("fit_inv_sqrt {:?}", t.elapsed());
    let t = Instant::now();
    let _ = fit_reciprocal(Interval::new(8.5e-4, 1.26).unwrap(), &InverseOptions::new(1e-3)).unwrap();
    eprintln!("fit_reciprocal {:?}", t.elapsed());
    let t = Instant::now();
    let _ = fit_relu(Interval::new(-50.0, 50.0).unwrap(), &ReluOptions::new(1e-2)).unwrap();
    eprintln!("fit_relu wide {:?}", t.elapsed());
    let t = Instant::now();
    let _ = fit_activation(Activation::Gelu, Interval::new(-19.8, 28.3).unwrap(), &FitOptions::new(1e-2)).unwrap();
    eprintln!("gelu {:?}", t.elapsed());
}
