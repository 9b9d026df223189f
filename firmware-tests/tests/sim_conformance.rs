//! The HAL conformance suite on the simulated Xavier NX GPU.

use dynofa_core::lut::Unit;
use dynofa_firmware_tests::conformance::{ENTRIES, Platform};
use dynofa_firmware_tests::hal_conformance;
use dynofa_hal_sim::board::{
    Board, SharedBoard, SimClock, SimDelay, SimEngine, SimFrequency, SimLoad, model_hal, unit_hal,
};
use dynofa_hal_sim::model::GPU_KHZ;
use dynofa_hal_sim::{SimLut, dynamic_ofa_lut_path, load_lut};

struct Sim {
    board: SharedBoard,
    lut: SimLut,
}

fn sim() -> Sim {
    let lut = load_lut(&dynamic_ofa_lut_path()).unwrap();
    let board = Board::new(&lut, &[(Unit::Gpu, 100.0)], GPU_KHZ[GPU_KHZ.len() - 1], 1);
    let lut = board.profile(&lut, 50, 2);
    Sim { board: board.shared(), lut }
}

impl Platform for Sim {
    type Clock = SimClock;
    type Engine = SimEngine;
    type Delay = SimDelay;
    type Frequency = SimFrequency;
    type Load = SimLoad;

    fn lut(&self) -> &dynofa_core::lut::Lut<ENTRIES> {
        &self.lut
    }
    fn unit(&self) -> Unit {
        Unit::Gpu
    }
    fn model(&mut self) -> (SimClock, SimEngine, SimDelay) {
        model_hal(&self.board, 0)
    }
    fn unit_io(&mut self) -> (Option<SimFrequency>, Option<SimLoad>) {
        let (f, l) = unit_hal(&self.board, Unit::Gpu);
        (Some(f), Some(l))
    }
    fn input_len(&self) -> usize {
        0
    }
}

hal_conformance!(sim());
