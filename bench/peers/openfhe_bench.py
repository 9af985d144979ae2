#!/usr/bin/env python3
"""CKKS operation timings with OpenFHE (the `openfhe` PyPI wheel), at polyhe's benchmark parameters.

Run inside bench/peers/.venv-openfhe (CPython 3.10; see setup.sh):

    .venv-openfhe/bin/python openfhe_bench.py --log-n 14 --depth 5 --reps 10 [--dnum K] [--json]

Parameters (chosen to match `polyhe bench runtime`):
  ring dimension N = 2^log_n, full packing (N/2 real slots), multiplicative depth D,
  FIXEDMANUAL scaling (rescale is an explicit, separately timed ModReduce),
  first modulus 60 bits, scaling moduli 40 bits (chain [60, 40 x D]), scale 2^40,
  HYBRID key switching with OpenFHE's default number of digits (dnum) unless --dnum is given,
  UNIFORM_TERNARY secret, public-key encryption, security HEStd_128_classic (falls back to
  HEStd_NotSet only if OpenFHE refuses the ring dimension, and says so in params.security).

OpenFHE sizes the special modulus P itself from 60-bit primes with a margin over the largest digit,
and the Python API cannot override it: at D=5 its default dnum=3 gets 2 special primes, and so does
`--dnum 6` (one digit per Q prime, polyhe's and SEAL's digit count; dnum=2 gets 3). So OpenFHE
never runs polyhe's exact [60, 40 x D, 60 special] chain; params reports the dnum and number of
special primes actually used (counted in a key, see inspect_key_switching).

Every operation is timed at the top level (fresh ciphertexts, level 0 in OpenFHE's numbering),
R times after one warm-up call; ops_ms holds the median in milliseconds, ops_min_ms the minimum.
decrypt_decode includes copying the N/2 values out to a numpy array; encode_encrypt starts from one.
hoisted_rotate = (one EvalFastRotationPrecompute + EvalFastRotation for steps 1..8) / 8, so the
precompute IS included, amortised over the 8 rotations.

After timing, every result is decrypted and compared with the same computation on the cleartext;
a mismatch exits with status 1, so the timings are known to be of working operations.
"""

import json
import math
import os
import platform
import sys
from importlib.metadata import version

from peer_common import (HOISTED_ROTATIONS, MachineMonitor, arg_parser, check_args, max_err,
                         print_result, summarize, time_op)


def parse_args():
    ap = arg_parser(__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for OpenFHE (default 1)")
    ap.add_argument("--dnum", type=int, default=0,
                    help="HYBRID key-switching digits (numLargeDigits); 0 = OpenFHE's default")
    args = ap.parse_args()
    check_args(ap, args)
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    if args.dnum < 0:
        ap.error("--dnum must be 0 (default) or positive")
    return args


def make_params(o, args, log_n, sec_level):
    p = o.CCParamsCKKSRNS()
    p.SetRingDim(1 << log_n)
    p.SetBatchSize(1 << (log_n - 1))
    p.SetMultiplicativeDepth(args.depth)
    p.SetScalingModSize(40)
    p.SetFirstModSize(60)
    p.SetScalingTechnique(o.FIXEDMANUAL)
    p.SetKeySwitchTechnique(o.HYBRID)
    p.SetNumLargeDigits(args.dnum)
    p.SetSecretKeyDist(o.UNIFORM_TERNARY)
    p.SetSecurityLevel(sec_level)
    return p


def make_context(o, p):
    cc = o.GenCryptoContext(p)
    cc.Enable(o.PKE)
    cc.Enable(o.KEYSWITCH)
    cc.Enable(o.LEVELEDSHE)
    return cc


def inspect_key_switching(o, args):
    """Counts the digits and special primes OpenFHE actually uses.

    The Python API exposes neither, so a relinearization key of a context with the same modulus
    chain and dnum is serialized to JSON and its towers are counted (digits = key components,
    special primes = towers - Q primes). A 2^12 ring (HEStd_NotSet) is used because OpenFHE picks P
    from the bit sizes of the chain and dnum alone, and serializing a 2^16 key as JSON would take
    many seconds and GBs.
    """
    cc = make_context(o, make_params(o, args, 12, o.HEStd_NotSet))
    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    key = cc.GetEvalMultKeyVector(kp.secretKey.GetKeyTag())[0]
    data = json.loads(o.Serialize(key, o.JSON))["value0"]["ptr_wrapper"]["data"]
    digits = len(data["ak"])
    towers = len(data["ak"][0]["v"])
    return digits, towers - (args.depth + 1)


def main():
    args = parse_args()
    monitor = MachineMonitor()
    # OpenMP reads OMP_NUM_THREADS when the library loads, so it must be set before the import.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import openfhe as o

    n = 1 << args.log_n
    slots = n // 2

    security = "HEStd_128_classic"
    try:
        cc = make_context(o, make_params(o, args, args.log_n, o.HEStd_128_classic))
    except Exception as e:  # OpenFHE raises a plain RuntimeError for a non-compliant N.
        reason = str(e).strip().split("):", 1)[-1].strip()
        security = f"HEStd_NotSet (OpenFHE refused HEStd_128_classic: {reason[:160]})"
        cc = make_context(o, make_params(o, args, args.log_n, o.HEStd_NotSet))
    if cc.GetRingDimension() != n:
        print(f"openfhe_bench: OpenFHE chose ring dimension {cc.GetRingDimension()}, not {n}",
              file=sys.stderr)
        return 1

    cc_json = json.loads(o.Serialize(cc, o.JSON))
    crypto = cc_json["value0"]["ptr_wrapper"]["data"]["cc"]["ptr_wrapper"]["data"]["value0"]
    dnum = crypto["dnum"]
    aux_bits = crypto["ab"]
    digits, special_primes = inspect_key_switching(o, args)
    if digits != dnum:
        print(f"openfhe_bench: context says dnum={dnum} but a same-chain key has {digits} digits",
              file=sys.stderr)
        return 1

    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    cc.EvalRotateKeyGen(kp.secretKey, list(range(1, HOISTED_ROTATIONS + 1)))

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-1.0, 1.0, slots)
    y = rng.uniform(-1.0, 1.0, slots)
    pt_y = cc.MakeCKKSPackedPlaintext(y)
    ct_x = cc.Encrypt(kp.publicKey, cc.MakeCKKSPackedPlaintext(x))
    ct_y = cc.Encrypt(kp.publicKey, pt_y)
    ct_xy = cc.EvalMult(ct_x, ct_y)  # input of the rescale timing: scale 2^80, not yet rescaled
    m = cc.GetCyclotomicOrder()

    def encode_encrypt(_):
        return cc.Encrypt(kp.publicKey, cc.MakeCKKSPackedPlaintext(x))

    def decrypt(ct):
        pt = cc.Decrypt(kp.secretKey, ct)  # decodes too (CKKS Decrypt calls Decode)
        pt.SetLength(slots)
        return pt.GetRealPackedValueArray()

    def hoisted(_):
        pre = cc.EvalFastRotationPrecompute(ct_x)
        return [cc.EvalFastRotation(ct_x, k, m, pre) for k in range(1, HOISTED_ROTATIONS + 1)]

    r = args.reps
    samples = {
        "encode_encrypt": time_op(encode_encrypt, r),
        "decrypt_decode": time_op(lambda _: decrypt(ct_x), r),
        "add": time_op(lambda _: cc.EvalAdd(ct_x, ct_y), r),
        "mul_plain": time_op(lambda _: cc.EvalMult(ct_x, pt_y), r),
        "mul_relin": time_op(lambda _: cc.EvalMult(ct_x, ct_y), r),
        "rescale": time_op(lambda _: cc.ModReduce(ct_xy), r),
        "rotate": time_op(lambda _: cc.EvalRotate(ct_x, 1), r),
        "hoisted_rotate": [t / HOISTED_ROTATIONS for t in time_op(hoisted, r)],
    }

    # Correctness of everything that was timed (errors are ~2^-20 or smaller at these parameters).
    tol = 1e-4
    xy = x * y
    checks = {
        "encode_encrypt+decrypt_decode": max_err(decrypt(encode_encrypt(None)), x),
        "add": max_err(decrypt(cc.EvalAdd(ct_x, ct_y)), x + y),
        "mul_plain+rescale": max_err(decrypt(cc.ModReduce(cc.EvalMult(ct_x, pt_y))), xy),
        "mul_relin+rescale": max_err(decrypt(cc.ModReduce(ct_xy)), xy),
        "rotate": max_err(decrypt(cc.EvalRotate(ct_x, 1)), np.roll(x, -1)),
    }
    for k, ct in enumerate(hoisted(None), start=1):
        checks[f"hoisted_rotate[{k}]"] = max_err(decrypt(ct), np.roll(x, -k))
    bad = {k: v for k, v in checks.items() if not v < tol}
    if bad:
        print(f"openfhe_bench: wrong results (max abs error >= {tol}): {bad}", file=sys.stderr)
        return 1

    log_q = math.log2(cc.GetModulus())
    med, low = summarize(samples)
    result = {
        "params": {
            "library": "OpenFHE",
            "version": version("openfhe"),
            "python": platform.python_version(),
            "log_n": args.log_n,
            "slots": slots,
            "depth": args.depth,
            "chain_bits": [60] + [40] * args.depth,
            "special_primes": special_primes,
            "special_prime_bits": aux_bits,
            "log_q": round(log_q, 1),
            "log_qp": round(log_q + special_primes * aux_bits, 1),
            "log_scale": 40,
            "scaling": "FIXEDMANUAL",
            "key_switching": "HYBRID",
            "dnum": dnum,
            "dnum_requested": args.dnum if args.dnum else "default",
            "secret": "UNIFORM_TERNARY",
            "encryption": "public key",
            "security": security,
            "threads": args.threads,
            "reps": r,
            "statistic": "median",
            "hoisted_rotations": HOISTED_ROTATIONS,
            "hoisted_includes_precompute": True,
            "max_abs_error": max(checks.values()),
            "machine": monitor.report(),
        },
        "ops_ms": med,
        "ops_min_ms": low,
    }
    print_result(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
