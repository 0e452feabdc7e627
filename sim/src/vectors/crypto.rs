//! Vector cases for `krill_core::crypto` (ES-13, ES-2.9; SPEC-NOTES 9, 21,
//! 32, 37, 41). Byte strings are hex in wire order.

use super::Outcome;
use krill_core::crypto::enroll::{
    issue_provisioner_certificate, open_netkey, seal_netkey, verify_provisioner_certificate, NetKey, SealContext,
    SealedNetKey,
};
use krill_core::crypto::fuzzy::{enroll, reconstruct, PufError, PufHealth, PUF_BITS, PUF_BYTES};
use krill_core::crypto::sign::{presign_death_certificate, Crypto, ModeledAuthority, RealCrypto};
use krill_core::crypto::{
    aes_cmac, blake2s256, dust_mac, dust_mac_verify, hkdf_sha256, x25519, x25519_base, EnrollError, Identity, Seed,
};
use krill_core::wire::metabolic::DeathReason;
use krill_core::wire::Bytes;
use krill_core::{DeviceId, PublicKey, Signature, Timestamp};
use serde::Deserialize;

fn unhex(o: &mut Outcome, what: &str, s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| {
        o.fail(format!("{what}: bad hex: {e}"));
        Vec::new()
    })
}

fn unhex_n<const N: usize>(o: &mut Outcome, what: &str, s: &str) -> [u8; N] {
    let v = unhex(o, what, s);
    v.as_slice().try_into().unwrap_or_else(|_| {
        o.fail(format!("{what}: expected {N} bytes, got {}", v.len()));
        [0u8; N]
    })
}

/// Ed25519 (RFC 8032) with a raw secret key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ed25519 {
    /// 32-byte secret key.
    pub secret: String,
    /// Message.
    pub message: String,
    /// Expected public key.
    pub public: String,
    /// Expected signature; it must verify, and fail with its last bit flipped.
    pub signature: String,
}

/// AES-128-CMAC (RFC 4493) and the 4-byte Dust MAC.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cmac {
    /// 16-byte key.
    pub key: String,
    /// Message.
    pub message: String,
    /// Expected 16-byte tag.
    pub mac: String,
    /// Expected truncated Dust MAC (4 bytes).
    pub dust_mac: String,
}

/// HKDF-SHA256 (RFC 5869); the output length is that of `okm`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hkdf {
    /// Input keying material.
    pub ikm: String,
    /// Salt.
    pub salt: String,
    /// Info.
    pub info: String,
    /// Expected output.
    pub okm: String,
}

/// X25519 (RFC 7748) between two secrets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X25519 {
    /// First 32-byte secret.
    pub secret_a: String,
    /// Second 32-byte secret.
    pub secret_b: String,
    /// Expected public key of `secret_a`.
    pub public_a: String,
    /// Expected public key of `secret_b`.
    pub public_b: String,
    /// Expected shared secret (both directions).
    pub shared: String,
}

/// BLAKE2s-256.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blake2s {
    /// Input bytes.
    pub input: String,
    /// Expected digest.
    pub digest: String,
}

/// ES-13.1 step 3: every key of a seed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityCase {
    /// 32-byte seed `S`.
    pub seed: String,
    /// Expected Ed25519 public key.
    pub public_key: PublicKey,
    /// Expected `device_id`.
    pub device_id: DeviceId,
    /// Expected `network_auth_key` (16 bytes).
    pub network_auth_key: String,
    /// Expected X25519 public key.
    pub dh_public: String,
}

/// What reconstruction should give.
#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
pub enum FuzzyOutcome {
    /// The enrolled seed comes back, with this many bit errors.
    Recovered {
        /// Expected bit errors.
        bit_errors: u16,
        /// Expected health flag.
        health: PufHealth,
    },
    /// Reconstruction fails with this error.
    Failed(PufError),
}

/// Fuzzy extractor: enroll a generated response, flip bits, reconstruct.
///
/// Patterns come from splitmix64 (`x += 0x9E3779B97F4A7C15`, then the
/// usual two xor-shift-multiply rounds): the response's byte `i` is the low
/// byte of the `i`-th draw from `response_seed`; the flipped positions are a
/// partial Fisher–Yates shuffle of `0..32768` (draw `j = i + next % (32768 −
/// i)`) from `flip_seed`, bit `p` being bit `p % 8` of byte `p / 8`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fuzzy {
    /// 32-byte enrollment seed.
    pub seed: String,
    /// Seed of the generated PUF response.
    pub response_seed: u64,
    /// Exactly this many distinct bits are flipped before reconstruction.
    pub flips: u32,
    /// Seed of the flipped positions.
    pub flip_seed: u64,
    /// Expected outcome.
    pub outcome: FuzzyOutcome,
}

/// The modeled signer: a genuine tag verifies; forgeries do not.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modeled {
    /// The simulation's 32-byte authority secret.
    pub authority: String,
    /// Seed of the signer.
    pub signer_seed: String,
    /// Seed of a second device.
    pub other_seed: String,
    /// Message.
    pub message: String,
    /// Expected tag (64 bytes: 32 of BLAKE2s, 32 zero).
    pub tag: String,
}

/// Seal a NetKey into an ENROLLMENT_RESPONSE and open it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// Seed of the enrolling device.
    pub recipient_seed: String,
    /// The provisioner's ephemeral X25519 secret.
    pub ephemeral_secret: String,
    /// The 16-byte NetKey.
    pub netkey: String,
    /// The provisioner's `device_id`.
    pub provisioner_id: DeviceId,
    /// `time_sync`.
    pub time_sync: Timestamp,
    /// `deployment_zone`.
    pub deployment_zone: u16,
    /// Expected `provisioner_pubkey` (the ephemeral public key).
    pub ephemeral_public: String,
    /// Expected `network_key_enc` (ciphertext ‖ tag).
    pub sealed: String,
    /// Seed of another device, which must fail to open it.
    pub other_seed: String,
}

/// A provisioner certificate checked at a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// The deployment root's 32-byte Ed25519 secret key.
    pub root_secret: String,
    /// Key the root signs as the certificate's.
    pub provisioner_key: PublicKey,
    /// Window start.
    pub not_before: Timestamp,
    /// Window end.
    pub not_after: Timestamp,
    /// Expected root signature.
    pub signature: Signature,
    /// Time of the check.
    pub now: Timestamp,
    /// Flip one bit of the provisioner key before checking (a forged certificate).
    #[serde(default)]
    pub tamper: bool,
    /// Expected verdict.
    pub verdict: Result<(), EnrollError>,
}

/// A pre-signed DEATH_CERTIFICATE (SPEC-NOTES 32).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Death {
    /// Seed of the device.
    pub seed: String,
    /// `not_before` written as the certificate's timestamp.
    pub not_before: Timestamp,
    /// Expected 113-byte frame.
    pub frame: String,
}

/// A crypto case.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// RFC 8032 sign/verify.
    Ed25519(Ed25519),
    /// RFC 4493 CMAC and the Dust MAC.
    Cmac(Cmac),
    /// RFC 5869 HKDF.
    Hkdf(Hkdf),
    /// RFC 7748 X25519.
    X25519(X25519),
    /// BLAKE2s-256.
    Blake2s(Blake2s),
    /// Identity derivation.
    Identity(IdentityCase),
    /// Fuzzy extractor decode.
    Fuzzy(Fuzzy),
    /// Modeled crypto.
    Modeled(Modeled),
    /// Sealed NetKey.
    Seal(Seal),
    /// Provisioner certificate.
    Certificate(Certificate),
    /// Pre-signed death certificate.
    Death(Death),
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut o = Outcome::default();
    match c {
        Case::Ed25519(c) => ed25519(&mut o, c),
        Case::Cmac(c) => cmac(&mut o, c),
        Case::Hkdf(c) => {
            let (ikm, salt, info, want) = (
                unhex(&mut o, "ikm", &c.ikm),
                unhex(&mut o, "salt", &c.salt),
                unhex(&mut o, "info", &c.info),
                unhex(&mut o, "okm", &c.okm),
            );
            let mut okm = vec![0u8; want.len()];
            hkdf_sha256(&salt, &ikm, &[&info], &mut okm);
            o.exact("okm", hex::encode(okm), hex::encode(want));
        }
        Case::X25519(c) => {
            let (a, b) = (unhex_n(&mut o, "secret_a", &c.secret_a), unhex_n(&mut o, "secret_b", &c.secret_b));
            let (pa, pb) = (x25519_base(a), x25519_base(b));
            o.exact("public_a", hex::encode(pa), c.public_a.to_lowercase());
            o.exact("public_b", hex::encode(pb), c.public_b.to_lowercase());
            o.exact("shared_ab", hex::encode(x25519(a, pb)), c.shared.to_lowercase());
            o.exact("shared_ba", hex::encode(x25519(b, pa)), c.shared.to_lowercase());
        }
        Case::Blake2s(c) => {
            let input = unhex(&mut o, "input", &c.input);
            o.exact("digest", hex::encode(blake2s256(&input)), c.digest.to_lowercase());
        }
        Case::Identity(c) => {
            let id = Identity::from_seed(&Seed(unhex_n(&mut o, "seed", &c.seed)));
            o.exact("public_key", id.public_key(), c.public_key);
            o.exact("device_id", id.device_id(), c.device_id);
            o.exact("network_auth_key", hex::encode(id.network_auth_key()), c.network_auth_key.to_lowercase());
            o.exact("dh_public", hex::encode(id.dh_public().0), c.dh_public.to_lowercase());
        }
        Case::Fuzzy(c) => fuzzy(&mut o, c),
        Case::Modeled(c) => modeled(&mut o, c),
        Case::Seal(c) => seal(&mut o, c),
        Case::Certificate(c) => certificate(&mut o, c),
        Case::Death(c) => {
            let id = Identity::from_seed(&Seed(unhex_n(&mut o, "seed", &c.seed)));
            let f = presign_death_certificate(&RealCrypto::new(&id), DeathReason::PufAnomaly, c.not_before);
            o.exact("frame", hex::encode(f), c.frame.to_lowercase());
            let repr = krill_core::wire::FrameRepr::parse(&f);
            o.exact("parses", repr.is_ok(), true);
            if let Ok(r) = repr {
                let ok = krill_core::crypto::verify_frame(&RealCrypto::new(&id), &id.public_key(), &f, r.signed_len());
                o.exact("verifies", ok, Ok(()));
            }
        }
    }
    o
}

fn ed25519(o: &mut Outcome, c: &Ed25519) {
    let key = RealCrypto::from_secret_key(&unhex_n(o, "secret", &c.secret));
    let msg = unhex(o, "message", &c.message);
    o.exact("public", hex::encode(key.public_key().0), c.public.to_lowercase());
    let sig = key.sign(&msg);
    o.exact("signature", hex::encode(sig.0), c.signature.to_lowercase());
    let want = Signature(unhex_n(o, "signature", &c.signature));
    o.exact("verifies", key.verify(&key.public_key(), &msg, &want), true);
    let mut bad = want;
    bad.0[63] ^= 0x01;
    o.exact("flipped_bit_verifies", key.verify(&key.public_key(), &msg, &bad), false);
}

fn cmac(o: &mut Outcome, c: &Cmac) {
    let key = unhex_n(o, "key", &c.key);
    let msg = unhex(o, "message", &c.message);
    o.exact("mac", hex::encode(aes_cmac(&key, &msg)), c.mac.to_lowercase());
    let short = dust_mac(&key, &msg);
    o.exact("dust_mac", hex::encode(short), c.dust_mac.to_lowercase());
    o.exact("dust_mac_verifies", dust_mac_verify(&key, &msg, &short), true);
    let mut bad = short;
    bad[3] ^= 0x80;
    o.exact("forged_dust_mac_verifies", dust_mac_verify(&key, &msg, &bad), false);
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn fuzzy(o: &mut Outcome, c: &Fuzzy) {
    let seed = Seed(unhex_n(o, "seed", &c.seed));
    let mut rng = SplitMix(c.response_seed);
    let mut r = Box::new([0u8; PUF_BYTES]);
    for b in r.iter_mut() {
        *b = rng.next() as u8;
    }
    let mut w = Box::new([0u8; PUF_BYTES]);
    enroll(&r, &seed, &mut w);
    let flips = (c.flips as usize).min(PUF_BITS);
    let mut pos: Vec<usize> = (0..PUF_BITS).collect();
    let mut rng = SplitMix(c.flip_seed);
    for i in 0..flips {
        let j = i + (rng.next() % (PUF_BITS - i) as u64) as usize;
        pos.swap(i, j);
        r[pos[i] / 8] ^= 1 << (pos[i] % 8);
    }
    o.value("flipped_ber", flips as f64 / PUF_BITS as f64);
    let got = match reconstruct(&r, &w) {
        Ok(rec) => {
            o.exact("seed_recovered", rec.seed == seed, true);
            FuzzyOutcome::Recovered { bit_errors: rec.bit_errors, health: rec.health() }
        }
        Err(e) => FuzzyOutcome::Failed(e),
    };
    o.exact("outcome", got, c.outcome);
}

fn modeled(o: &mut Outcome, c: &Modeled) {
    let auth = ModeledAuthority::new(&unhex_n(o, "authority", &c.authority));
    let signer = auth.crypto_for(&Identity::from_seed(&Seed(unhex_n(o, "signer_seed", &c.signer_seed))));
    let other = auth.crypto_for(&Identity::from_seed(&Seed(unhex_n(o, "other_seed", &c.other_seed))));
    let msg = unhex(o, "message", &c.message);
    let tag = signer.sign(&msg);
    o.exact("tag", hex::encode(tag.0), c.tag.to_lowercase());
    o.exact("genuine_verifies", other.verify(&signer.public_key(), &msg, &tag), true);
    o.exact("claimed_for_other_key", other.verify(&other.public_key(), &msg, &tag), false);
    let mut m2 = msg.clone();
    m2.push(0);
    o.exact("on_other_message", other.verify(&signer.public_key(), &m2, &tag), false);
    let mut forged = tag;
    forged.0[0] ^= 1;
    o.exact("forged_tag", other.verify(&signer.public_key(), &msg, &forged), false);
    let real = RealCrypto::new(&Identity::from_seed(&Seed(unhex_n(o, "signer_seed", &c.signer_seed))));
    o.exact("real_signature_as_tag", other.verify(&signer.public_key(), &msg, &real.sign(&msg)), false);
    let foreign = ModeledAuthority::new(&[0x5A; 32]).crypto_for(&Identity::from_seed(&Seed(unhex_n(
        o,
        "signer_seed",
        &c.signer_seed,
    ))));
    o.exact("other_authority_tag", other.verify(&signer.public_key(), &msg, &foreign.sign(&msg)), false);
}

fn seal(o: &mut Outcome, c: &Seal) {
    let dev = Identity::from_seed(&Seed(unhex_n(o, "recipient_seed", &c.recipient_seed)));
    let other = Identity::from_seed(&Seed(unhex_n(o, "other_seed", &c.other_seed)));
    let nk = NetKey(unhex_n(o, "netkey", &c.netkey));
    let ctx = SealContext::Enrollment {
        provisioner_id: c.provisioner_id,
        target_device_id: dev.device_id(),
        time_sync: c.time_sync,
        deployment_zone: c.deployment_zone,
    };
    match seal_netkey(&unhex_n(o, "ephemeral_secret", &c.ephemeral_secret), &dev.dh_public(), &nk, &ctx) {
        Ok(s) => {
            o.exact("ephemeral_public", hex::encode(s.ephemeral_public.0), c.ephemeral_public.to_lowercase());
            o.exact("sealed", hex::encode(s.ciphertext.0), c.sealed.to_lowercase());
            o.exact("opens", open_netkey(&dev, &s, &ctx) == Ok(nk.clone()), true);
            o.exact("other_device_opens", open_netkey(&other, &s, &ctx).map(|_| ()), Err(EnrollError::Unauthentic));
            let mut bad: SealedNetKey = s;
            bad.ciphertext = Bytes(bad.ciphertext.0.map(|b| b ^ 0x01));
            o.exact("tampered_opens", open_netkey(&dev, &bad, &ctx).map(|_| ()), Err(EnrollError::Unauthentic));
        }
        Err(e) => o.fail(format!("seal failed: {e:?}")),
    }
}

fn certificate(o: &mut Outcome, c: &Certificate) {
    let root = RealCrypto::from_secret_key(&unhex_n(o, "root_secret", &c.root_secret));
    let mut cert = issue_provisioner_certificate(&root, &c.provisioner_key, c.not_before, c.not_after);
    o.exact("signature", cert.signature, c.signature);
    if c.tamper {
        cert.provisioner_key.0[0] ^= 1;
    }
    o.exact("verdict", verify_provisioner_certificate(&root, &root.public_key(), &cert, c.now), c.verdict);
}
