//! Property tests over every header-framed body (ES-2, ES-13.2, ES-16.4):
//! for every [`Body`] variant in both versions `parse(emit(m)) == m`, the
//! version-2 VACCINE through [`VaccineV2Frame`], and no byte string makes a
//! decoder panic, including arbitrary bytes behind a valid header of every
//! type. Accepted bytes are canonical: re-emitting them gives them back.

use super::enroll::{EnrollmentRequestV2, EnrollmentResponseV2, MAX_SENSOR_TYPES};
use super::immune::{
    AttackSignature, AttackType, AuditResult, ConsistencyAlertV2, InflammationQueryV2, InflammationReplyV2,
    ProfileComponent, ProfileSyncV2, RejectionReason, Severity, VaccineV2, VACCINE_V2_LEN,
};
use super::metabolic::{DeathReason, RetractionReason};
use super::module::{ModuleState, MAX_CHUNK};
use super::presence::PresencePulseV2;
use super::timesync::SyncTime;
use super::trace::GatewayVouch;
use super::*;
use crate::types::{Hash32, HashPrefix2, HashPrefix4, PublicKey, QuantityType, Signature, MAX_PROFILE_BINS};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;
use std::vec::Vec;

fn device_id() -> impl Strategy<Value = DeviceId> {
    any::<[u8; 8]>().prop_map(DeviceId)
}
fn quantity() -> impl Strategy<Value = QuantityType> {
    any::<u8>().prop_map(QuantityType::from_u8)
}
fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(a, b)| {
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&a);
        out[16..].copy_from_slice(&b);
        out
    })
}
fn signature() -> impl Strategy<Value = Signature> {
    (bytes32(), bytes32()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}
fn mode() -> impl Strategy<Value = Mode> {
    (0u8..3).prop_map(|v| Mode::from_u8(v).unwrap())
}
fn finite() -> impl Strategy<Value = f32> {
    prop_oneof![
        proptest::num::f32::NORMAL | proptest::num::f32::ZERO | proptest::num::f32::SUBNORMAL,
        Just(f32::MAX),
        Just(f32::MIN_POSITIVE),
    ]
}
fn sync_time() -> impl Strategy<Value = SyncTime> {
    (any::<u32>(), 0u16..1000).prop_map(|(secs, millis)| SyncTime { secs, millis })
}

/// `None` in version 1, `Some` drawn from `s` in version 2.
fn ext<T: Clone + core::fmt::Debug + 'static>(
    v: Version,
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    match v {
        Version::V1 => Just(None).boxed(),
        Version::V2 => s.prop_map(Some).boxed(),
    }
}

fn trace(v: Version) -> BoxedStrategy<Body> {
    let vouch = match v {
        Version::V1 => Just(None).boxed(),
        Version::V2 => proptest::option::of(
            (device_id(), any::<u32>())
                .prop_map(|(gateway_id, dust_counter)| GatewayVouch { gateway_id, dust_counter }),
        )
        .boxed(),
    };
    (any::<u32>(), quantity(), any::<i16>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<[u8; 4]>(), vouch)
        .prop_map(|(timestamp, quantity, reading, confidence, weight, seq, p, vouch)| {
            Body::TraceDeposit(TraceDeposit {
                timestamp,
                quantity,
                reading,
                confidence,
                weight,
                seq,
                prev_hash: HashPrefix4(p),
                vouch,
            })
        })
        .boxed()
}

fn presence(v: Version) -> BoxedStrategy<Body> {
    let x = ext(
        v,
        (any::<u32>(), any::<i8>()).prop_map(|(timestamp, tx_power_dbm)| PresencePulseV2 { timestamp, tx_power_dbm }),
    );
    (mode(), any::<u8>(), x)
        .prop_map(|(mode, neighbor_count, v2)| Body::PresencePulse(PresencePulse { mode, neighbor_count, v2 }))
        .boxed()
}

fn mode_announce() -> BoxedStrategy<Body> {
    (mode(), mode(), any::<u8>(), any::<u8>(), any::<u32>())
        .prop_map(|(mode, previous_mode, neighbor_count, capability_flags, timestamp)| {
            Body::ModeAnnounce(ModeAnnounce { mode, previous_mode, neighbor_count, capability_flags, timestamp })
        })
        .boxed()
}

fn heartbeat() -> BoxedStrategy<Body> {
    (any::<u32>(), any::<u32>(), any::<u8>(), mode(), any::<[u8; 2]>())
        .prop_map(|(timestamp, uptime, battery_level, mode, h)| {
            Body::Heartbeat(Heartbeat { timestamp, uptime, battery_level, mode, dag_tip_hash: HashPrefix2(h) })
        })
        .boxed()
}

fn consistency_alert(v: Version) -> BoxedStrategy<Body> {
    let x =
        ext(v, (quantity(), any::<u32>()).prop_map(|(quantity, timestamp)| ConsistencyAlertV2 { quantity, timestamp }));
    (device_id(), any::<i16>(), any::<i16>(), any::<i16>(), (0u8..3).prop_map(|s| Severity::from_u8(s).unwrap()), x)
        .prop_map(|(suspect_id, suspect_reading, expected_max, expected_min, severity, v2)| {
            Body::ConsistencyAlert(ConsistencyAlert {
                suspect_id,
                suspect_reading,
                expected_max,
                expected_min,
                severity,
                v2,
            })
        })
        .boxed()
}

fn pyrexia() -> BoxedStrategy<Body> {
    (device_id(), quantity(), any::<i16>(), any::<u16>(), any::<u32>())
        .prop_map(|(subject_id, quantity, reading, deviation_tenths, timestamp)| {
            Body::PyrexiaNotice(PyrexiaNotice { subject_id, quantity, reading, deviation_tenths, timestamp })
        })
        .boxed()
}

fn inflammation_query(v: Version) -> BoxedStrategy<Body> {
    let x = ext(v, any::<u32>().prop_map(|query_id| InflammationQueryV2 { query_id }));
    (device_id(), quantity(), any::<i16>(), any::<i16>(), any::<u32>(), x)
        .prop_map(|(suspect_id, quantity, suspect_reading, reporter_reading, timestamp, v2)| {
            Body::InflammationQuery(InflammationQuery {
                suspect_id,
                quantity,
                suspect_reading,
                reporter_reading,
                timestamp,
                v2,
            })
        })
        .boxed()
}

fn inflammation_reply(v: Version) -> BoxedStrategy<Body> {
    let x = ext(
        v,
        (any::<u32>(), any::<u32>()).prop_map(|(query_id, timestamp)| InflammationReplyV2 { query_id, timestamp }),
    );
    (device_id(), (0u8..3).prop_map(|b| Verdict::from_u8(b).unwrap()), any::<i16>(), any::<u8>(), x)
        .prop_map(|(suspect_id, verdict, own_reading, own_confidence, v2)| {
            Body::InflammationReply(InflammationReply { suspect_id, verdict, own_reading, own_confidence, v2 })
        })
        .boxed()
}

fn rejection() -> BoxedStrategy<Body> {
    (device_id(), (0u8..4).prop_map(|b| RejectionReason::from_u8(b).unwrap()), any::<u16>(), any::<u32>(), any::<u32>())
        .prop_map(|(subject_id, reason, deviation_tenths, query_id, timestamp)| {
            Body::RejectionNotice(RejectionNotice { subject_id, reason, deviation_tenths, query_id, timestamp })
        })
        .boxed()
}

fn nk_request() -> BoxedStrategy<Body> {
    (device_id(), device_id(), any::<u32>(), any::<u32>())
        .prop_map(|(target_id, subject_id, nonce, timestamp)| {
            Body::NkAuditRequest(NkAuditRequest { target_id, subject_id, nonce, timestamp })
        })
        .boxed()
}

fn nk_response() -> BoxedStrategy<Body> {
    (
        device_id(),
        device_id(),
        any::<u32>(),
        (0u8..2).prop_map(|b| AuditResult::from_u8(b).unwrap()),
        any::<u16>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(|(requester_id, subject_id, nonce, result, drift_tenths, drifted_dims, timestamp)| {
            Body::NkAuditResponse(NkAuditResponse {
                requester_id,
                subject_id,
                nonce,
                result,
                drift_tenths,
                drifted_dims,
                timestamp,
            })
        })
        .boxed()
}

fn attack_signature() -> impl Strategy<Value = AttackSignature> {
    (quantity(), any::<i16>(), any::<u16>(), any::<u32>(), any::<u16>(), any::<[u8; 9]>()).prop_map(
        |(quantity, deviation_mean, deviation_std, temporal_pattern, affected_dims, r)| AttackSignature {
            quantity,
            deviation_mean,
            deviation_std,
            temporal_pattern,
            affected_dims,
            reserved: Bytes(r),
        },
    )
}

/// A vaccine; in version 2 the tail strength never exceeds the signed one.
fn vaccine(v: Version) -> impl Strategy<Value = Vaccine> {
    let x = ext(
        v,
        (any::<u8>(), any::<u8>()).prop_map(|(initial_strength, max_hops)| VaccineV2 { initial_strength, max_hops }),
    );
    (
        any::<u32>(),
        any::<[u8; 8]>(),
        (0u8..5).prop_map(|b| AttackType::from_u8(b).unwrap()),
        any::<u8>(),
        attack_signature(),
        any::<u8>(),
        x,
    )
        .prop_map(|(origin_timestamp, c, attack_type, hops_from_origin, attack_signature, s, v2)| {
            let vaccine_strength = match v2 {
                Some(x) => s.min(x.initial_strength),
                None => s,
            };
            Vaccine {
                origin_timestamp,
                origin_cluster: Bytes(c),
                attack_type,
                hops_from_origin,
                attack_signature,
                vaccine_strength,
                v2,
            }
        })
}

fn profile_sync(v: Version) -> BoxedStrategy<Body> {
    let stats = (any::<u32>(), finite(), finite(), any::<i16>(), any::<i16>(), any::<u32>()).prop_map(
        |(value_count, value_mean, value_var, value_min, value_max, last_updated)| ProfileSyncV2 {
            value_count,
            value_mean,
            value_var,
            value_min,
            value_max,
            last_updated,
        },
    );
    let version = match v {
        Version::V1 => any::<u16>().prop_map(u32::from).boxed(),
        Version::V2 => any::<u32>().boxed(),
    };
    (
        device_id(),
        version,
        (0u8..5).prop_map(|b| ProfileComponent::from_u8(b).unwrap()),
        vec(any::<u16>(), 0..=MAX_PROFILE_BINS),
        ext(v, stats),
    )
        .prop_map(|(subject_id, profile_version, component, bins, v2)| {
            Body::ProfileSync(ProfileSync {
                subject_id,
                profile_version,
                component,
                bins: heapless::Vec::from_slice(&bins).unwrap(),
                v2,
            })
        })
        .boxed()
}

fn death() -> BoxedStrategy<Body> {
    ((0u8..5).prop_map(|b| DeathReason::from_u8(b).unwrap()), any::<u32>(), bytes32())
        .prop_map(|(reason, timestamp, h)| {
            Body::DeathCertificate(DeathCertificate { reason, timestamp, old_pubkey_hash: Hash32(h) })
        })
        .boxed()
}

fn retraction() -> BoxedStrategy<Body> {
    let q = proptest::option::of((1u8..=255).prop_map(QuantityType::from_u8));
    ((0u8..4).prop_map(|b| RetractionReason::from_u8(b).unwrap()), q, any::<u32>(), any::<u32>(), any::<u32>())
        .prop_map(|(reason, quantity, from_timestamp, to_timestamp, timestamp)| {
            Body::DataRetraction(DataRetraction { reason, quantity, from_timestamp, to_timestamp, timestamp })
        })
        .boxed()
}

fn modules() -> BoxedStrategy<Body> {
    let advertise = (any::<u32>(), any::<u16>(), any::<u32>(), any::<u16>(), bytes32(), any::<u32>()).prop_map(
        |(module_id, version, size, chunk_count, h, timestamp)| {
            Body::ModuleAdvertise(ModuleAdvertise {
                module_id,
                version,
                size,
                chunk_count,
                image_hash: Hash32(h),
                timestamp,
            })
        },
    );
    let request = (device_id(), any::<u32>(), any::<u16>(), any::<u16>(), any::<u8>(), any::<u32>()).prop_map(
        |(target_id, module_id, version, first_chunk, chunk_count, timestamp)| {
            Body::ModuleRequest(ModuleRequest { target_id, module_id, version, first_chunk, chunk_count, timestamp })
        },
    );
    let transfer = (any::<u32>(), any::<u16>(), any::<u16>(), any::<u32>(), vec(any::<u8>(), 0..=MAX_CHUNK)).prop_map(
        |(module_id, version, chunk_index, timestamp, data)| {
            Body::ModuleTransfer(ModuleTransfer {
                module_id,
                version,
                chunk_index,
                timestamp,
                data: heapless::Vec::from_slice(&data).unwrap(),
            })
        },
    );
    let fitness = (
        any::<u32>(),
        any::<u16>(),
        any::<u8>(),
        (0u8..4).prop_map(|b| ModuleState::from_u8(b).unwrap()),
        any::<u16>(),
        any::<u32>(),
    )
        .prop_map(|(module_id, version, fitness, state, observed_epochs, timestamp)| {
            Body::ModuleFitness(ModuleFitness { module_id, version, fitness, state, observed_epochs, timestamp })
        });
    prop_oneof![advertise, request, transfer, fitness].boxed()
}

fn timesync() -> BoxedStrategy<Body> {
    let req = (device_id(), any::<u32>(), sync_time())
        .prop_map(|(target_id, nonce, t1)| Body::TimeSyncRequest(TimeSyncRequest { target_id, nonce, t1 }));
    let resp = (device_id(), any::<u32>(), sync_time(), sync_time(), sync_time(), any::<u8>()).prop_map(
        |(requester_id, nonce, t1, t2, t3, stratum)| {
            Body::TimeSyncResponse(TimeSyncResponse { requester_id, nonce, t1, t2, t3, stratum })
        },
    );
    prop_oneof![req, resp].boxed()
}

fn enrollment(v: Version) -> BoxedStrategy<Body> {
    let req_v2 = (any::<u32>(), bytes32())
        .prop_map(|(request_nonce, dh)| EnrollmentRequestV2 { request_nonce, dh_pubkey: Bytes(dh) });
    let req = (bytes32(), any::<u8>(), vec(quantity(), 0..=MAX_SENSOR_TYPES), any::<u16>(), ext(v, req_v2)).prop_map(
        |(k, capability_flags, types, hw_version, v2)| {
            Body::EnrollmentRequest(EnrollmentRequest {
                pubkey: PublicKey(k),
                capability_flags,
                sensor_types: heapless::Vec::from_slice(&types).unwrap(),
                hw_version,
                v2,
            })
        },
    );
    let resp = (device_id(), bytes32(), bytes32(), any::<u32>(), any::<u16>(), ext(v, any::<u32>())).prop_map(
        |(target_device_id, k, n, time_sync, deployment_zone, nonce)| {
            Body::EnrollmentResponse(EnrollmentResponse {
                target_device_id,
                provisioner_pubkey: Bytes(k),
                network_key_enc: Bytes(n),
                time_sync,
                deployment_zone,
                v2: nonce.map(|request_nonce| EnrollmentResponseV2 { request_nonce }),
            })
        },
    );
    let rot = (device_id(), bytes32(), any::<u32>(), bytes32(), any::<u32>()).prop_map(
        |(target_device_id, e, key_epoch, n, deadline)| {
            Body::KeyRotation(KeyRotation {
                target_device_id,
                ephemeral_pubkey: Bytes(e),
                key_epoch,
                new_netkey_enc: Bytes(n),
                deadline,
            })
        },
    );
    let cert =
        (bytes32(), any::<u32>(), any::<u32>(), signature()).prop_map(|(k, not_before, not_after, signature)| {
            Body::ProvisionerCertificate(ProvisionerCertificate {
                provisioner_key: PublicKey(k),
                not_before,
                not_after,
                signature,
            })
        });
    let gw = (any::<u16>(), any::<u32>(), any::<u8>(), any::<u32>()).prop_map(
        |(dust_device_count, uptime, anomaly_rate_self_report, timestamp)| {
            Body::GatewayStatus(GatewayStatus { dust_device_count, uptime, anomaly_rate_self_report, timestamp })
        },
    );
    prop_oneof![req, resp, rot, cert, gw].boxed()
}

/// Every body that travels through [`FrameRepr`] in version `v`.
fn body(v: Version) -> BoxedStrategy<Body> {
    let mut arms: Vec<BoxedStrategy<Body>> = std::vec![
        trace(v),
        presence(v),
        mode_announce(),
        heartbeat(),
        consistency_alert(v),
        pyrexia(),
        inflammation_query(v),
        inflammation_reply(v),
        rejection(),
        nk_request(),
        nk_response(),
        profile_sync(v),
        death(),
        retraction(),
        modules(),
        timesync(),
        enrollment(v),
    ];
    if v == Version::V1 {
        arms.push(vaccine(v).prop_map(Body::Vaccine).boxed());
    }
    Union::new(arms).boxed()
}

fn frame(v: Version) -> impl Strategy<Value = FrameRepr> {
    (device_id(), body(v), signature()).prop_map(move |(sender_id, body, signature)| FrameRepr {
        version: v,
        sender_id,
        body,
        signature,
    })
}

fn round_trip(f: &FrameRepr) -> Result<(), TestCaseError> {
    let mut buf = [0u8; 300];
    let n = f.emit(&mut buf).map_err(|e| TestCaseError::fail(std::format!("emit: {e}")))?;
    prop_assert_eq!(n, f.buffer_len());
    prop_assert!(n <= 255, "{:?} is {} bytes, over one BLE extended advertisement", f.body.msg_type(), n);
    prop_assert_eq!(FrameRepr::parse(&buf[..n]), Ok(f.clone()));
    prop_assert_eq!(SignedFrame::parse(&buf[..n]), Ok(SignedFrame::Framed(f.clone())));
    let other = match f.version {
        Version::V1 => Version::V2,
        Version::V2 => Version::V1,
    };
    // The other version either refuses the body or carries all of it: an
    // extension is never silently dropped or invented.
    let swapped = FrameRepr { version: other, ..f.clone() };
    match swapped.emit(&mut buf) {
        Ok(m) => prop_assert_eq!(FrameRepr::parse(&buf[..m]), Ok(swapped)),
        Err(e) => prop_assert!(
            matches!(e, WireError::VersionMismatch { .. } | WireError::InvalidField { field: "profile_version", .. }),
            "{:?}",
            e
        ),
    }
    Ok(())
}

/// Parsing a frame that decodes must be canonical: emitting it again gives
/// the same bytes.
fn parse_is_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(f) = SignedFrame::parse(bytes) {
        let mut buf = [0u8; 300];
        let n = f.emit(&mut buf).map_err(|e| TestCaseError::fail(std::format!("re-emit: {e}")))?;
        prop_assert_eq!(&buf[..n], bytes);
    }
    let _ = FrameRepr::parse(bytes);
    let _ = VaccineV2Frame::parse(bytes);
    let _ = TraceDepositPacket::new_checked(bytes);
    Ok(())
}

fn with_header(msg_type: MessageType, version: u8, tail: &[u8]) -> Vec<u8> {
    let mut b = std::vec![0x4B, 0x42, version, msg_type.to_u8(), 1, 2, 3, 4, 5, 6, 7, 8];
    b.extend_from_slice(tail);
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_v1_body_round_trips(f in frame(Version::V1)) {
        round_trip(&f)?;
    }

    #[test]
    fn every_v2_body_round_trips(f in frame(Version::V2)) {
        round_trip(&f)?;
    }

    #[test]
    fn vaccine_v2_round_trips_through_its_own_frame(sender_id in device_id(), body in vaccine(Version::V2), signature in signature()) {
        let f = VaccineV2Frame { sender_id, body, signature };
        let mut buf = [0u8; 128];
        prop_assert_eq!(f.emit(&mut buf), Ok(VACCINE_V2_LEN));
        prop_assert_eq!(VaccineV2Frame::parse(&buf[..VACCINE_V2_LEN]), Ok(f));
        prop_assert_eq!(SignedFrame::parse(&buf[..VACCINE_V2_LEN]), Ok(SignedFrame::VaccineV2(f)));
        let via_repr = FrameRepr { version: Version::V2, sender_id, body: Body::Vaccine(body), signature };
        let refused = matches!(via_repr.emit(&mut buf), Err(WireError::VersionMismatch { .. }));
        prop_assert!(refused, "FrameRepr must refuse a version-2 VACCINE");
    }

    #[test]
    fn relaying_a_vaccine_leaves_the_signed_bytes_alone(
        body in vaccine(Version::V2), sig in signature(), dh in any::<u8>(), ds in any::<u8>()
    ) {
        let f = VaccineV2Frame { sender_id: DeviceId([9; 8]), body, signature: sig };
        let (mut a, mut b) = ([0u8; VACCINE_V2_LEN], [0u8; VACCINE_V2_LEN]);
        f.emit(&mut a).unwrap();
        let hops = body.hops_from_origin.saturating_add(dh);
        let strength = body.vaccine_strength.saturating_sub(ds);
        let r = f.relayed(hops, strength).unwrap();
        r.emit(&mut b).unwrap();
        prop_assert_eq!(&a[..VaccineV2Frame::SIGNED_LEN + 64], &b[..VaccineV2Frame::SIGNED_LEN + 64]);
        prop_assert_eq!((b[111], b[112]), (hops, strength));
        if dh > 0 && body.hops_from_origin < u8::MAX {
            prop_assert!(r.relayed(body.hops_from_origin, strength).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        parse_is_canonical(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        t in proptest::sample::select(MessageType::ALL),
        version in 0u8..4,
        tail in vec(any::<u8>(), 0..260),
    ) {
        parse_is_canonical(&with_header(t, version, &tail))?;
    }

    #[test]
    fn truncating_a_valid_frame_is_an_error(f in frame(Version::V2), cut in 1usize..64) {
        let mut buf = [0u8; 300];
        let n = f.emit(&mut buf).unwrap();
        let short = n.saturating_sub(cut);
        prop_assert!(FrameRepr::parse(&buf[..short]).is_err());
    }
}

#[test]
fn every_message_type_but_the_batch_has_a_body() {
    for &t in MessageType::ALL {
        // A frame of the right type with an empty body must fail on length
        // or content, never as an unknown type (TraceBatch is framed elsewhere).
        let b = with_header(t, 1, &[0u8; 64]);
        match FrameRepr::parse(&b) {
            Err(WireError::UnknownType(0x71)) => assert_eq!(t, MessageType::TraceBatch),
            Err(WireError::UnknownType(x)) => panic!("{t:?} ({x:#04x}) has no body parser"),
            _ => {}
        }
    }
}
