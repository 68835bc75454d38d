//! Cost of the N-1 mix kernels for one 20 ms tick of one room: decode every member, sum the
//! talkers, give each talker total-minus-own, share one encode among the listeners.
//!
//! `cargo bench --bench mix_kernel`

use chorus_media::g711::Law;
use chorus_media::tone::Sine;
use chorus_mixer::kernel;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const FRAME: usize = 160;

fn room_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pcmu_room_tick");
    for &members in &[3usize, 10, 50, 200] {
        let talkers = 2.min(members);
        let mut inputs = vec![[0u8; FRAME]; members];
        for (i, input) in inputs.iter_mut().enumerate().take(talkers) {
            let mut pcm = [0i16; FRAME];
            Sine::new(300.0 + 200.0 * i as f64, 8000, 6000.0).fill(&mut pcm);
            Law::Mu.encode(&pcm, input);
        }
        let mut decoded = vec![[0i16; FRAME]; members];
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter(|| {
                let mut total = [0i32; FRAME];
                for (input, pcm) in inputs.iter().zip(decoded.iter_mut()).take(talkers) {
                    Law::Mu.decode(input, pcm);
                    kernel::accumulate(&mut total, pcm);
                }
                let mut out = [0i16; FRAME];
                let mut payload = [0u8; FRAME];
                for pcm in decoded.iter().take(talkers) {
                    kernel::minus_own(&total, pcm, &mut out);
                    Law::Mu.encode(&out, &mut payload);
                    std::hint::black_box(&payload);
                }
                kernel::clamp_total(&total, &mut out);
                Law::Mu.encode(&out, &mut payload);
                std::hint::black_box(&payload);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, room_tick);
criterion_main!(benches);
