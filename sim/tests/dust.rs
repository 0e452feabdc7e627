//! Dust devices end to end (ES-12.4, ES-16): a lying Dust sensor is
//! rejected by the Nanos that hear its gateway's vouched traces, and the
//! gateway's REJECTION_NOTICE reaches it in a Class A receive window, after
//! which it quarantines itself.

mod common;

use common::on_big_stack;
use krill_core::node::AuditEvent;
use krill_sim::scenario::Scenario;
use krill_sim::sim::FirmwareKind;
use krill_sim::summary::simulate;

#[test]
fn a_lying_dust_device_gets_its_rejection_notice_in_rx1_and_quarantines_itself() {
    let s = Scenario::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/dust-spike.ron")))
        .expect("the library scenario loads");
    let (downlinks, quarantined, rejected_by) = on_big_stack(move || {
        let run = simulate(&s, 1, FirmwareKind::Core, 1, |_, _| {}).expect("runs");
        let quarantined: Vec<u32> = run
            .sim
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| n.log().audits.iter().any(|(_, e)| matches!(e, AuditEvent::DustQuarantined)))
            .map(|(i, _)| i as u32)
            .collect();
        let rejected_by = run.summary.attackers.iter().map(|a| a.rejected_at_end.len()).collect::<Vec<_>>();
        (run.summary.downlinks, quarantined, rejected_by)
    });
    assert!(rejected_by.iter().all(|&n| n >= 5), "both liars rejected: {rejected_by:?}");
    assert!(downlinks.queued >= 2 && downlinks.sent >= 2, "{downlinks:?}");
    assert_eq!(downlinks.missed, 0, "every downlink went out in an RX1 slot: {downlinks:?}");
    assert!(!quarantined.is_empty() && quarantined.iter().all(|&i| i == 10 || i == 11), "{quarantined:?}");
}
