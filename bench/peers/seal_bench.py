#!/usr/bin/env python3
"""CKKS operation timings with Microsoft SEAL (through tenseal.sealapi), at polyhe's parameters.

Run inside bench/peers/.venv-seal (CPython 3.11; see setup.sh):

    .venv-seal/bin/python seal_bench.py --log-n 14 --depth 5 --reps 10 [--json]

TenSEAL's tensor API hides rescaling, so this uses `tenseal.sealapi`, the plain SEAL bindings that
tenseal ships, and times the Evaluator calls one by one.

Parameters: poly_modulus_degree N = 2^log_n, full packing (N/2 real slots), coeff_mod_bit_sizes
[60, 40 x D, 60] (the last prime is SEAL's single special prime), scale 2^40, 128-bit classical
security (SEAL's own check; it has no table entry for N = 2^16, so it refuses that ring: the script
then prints a skip object with "skipped" in params and exits 0). SEAL key switching decomposes over
every Q prime, i.e. hybrid key switching with dnum = D+1 and one special prime — the same shape as
polyhe's chain. Secrets are uniform ternary; encryption uses the public key.

Ops (median of R timed calls after one warm-up, ms; ops_min_ms has the minimum):
  encode_encrypt  encoder.encode(list, 2^40) + encryptor.encrypt
  decrypt_decode  decryptor.decrypt + encoder.decode_double (values returned as a Python list)
  add             evaluator.add
  mul_plain       evaluator.multiply_plain
  mul_relin       evaluator.multiply + relinearize_inplace
  rescale         evaluator.rescale_to_next
  rotate          evaluator.rotate_vector by 1 (Galois key for step 1)
  hoisted_rotate  null: SEAL has no hoisted rotations

After timing, every result is decrypted and compared with the same computation on the cleartext;
a mismatch exits with status 1.
"""

import json
import platform
import random
import sys
import tempfile
from importlib.metadata import version

from peer_common import (OPS, MachineMonitor, arg_parser, check_args, max_err, print_result,
                         summarize, time_op)


def seal_version(s, parms):
    """SEAL's version from the header of its own serialization (the bindings do not export it)."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        parms.save(f.name)
        header = f.read(5)
    # Header layout: magic u16, header size u8, version major u8, version minor u8, ...
    return f"{header[3]}.{header[4]}"


def main():
    ap = arg_parser(__doc__.splitlines()[0])
    args = ap.parse_args()
    check_args(ap, args)
    monitor = MachineMonitor()
    import tenseal.sealapi as s

    n = 1 << args.log_n
    slots = n // 2
    bits = [60] + [40] * args.depth + [60]
    scale = 2.0 ** 40

    parms = s.EncryptionParameters(s.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    base = {
        "library": "SEAL",
        "version": f"{seal_version(s, parms)} (tenseal {version('tenseal')})",
        "python": platform.python_version(),
        "log_n": args.log_n,
        "slots": slots,
        "depth": args.depth,
        "chain_bits": bits[:-1],
        "special_primes": 1,
        "special_prime_bits": 60,
        "log_q": sum(bits[:-1]),
        "log_qp": sum(bits),
        "log_scale": 40,
        "key_switching": "SEAL (per-prime digits, one special prime)",
        "dnum": args.depth + 1,
        "secret": "UNIFORM_TERNARY",
        "encryption": "public key",
        "security": "tc128",
        "threads": 1,
        "reps": args.reps,
        "statistic": "median",
        "hoisted_rotations": None,
    }
    try:
        parms.set_coeff_modulus(s.CoeffModulus.Create(n, bits))
        ctx = s.SEALContext(parms, True, s.SEC_LEVEL_TYPE.TC128)
        refused = None if ctx.parameters_set() else ctx.parameters_error_message()
    except Exception as e:  # SEAL throws for degrees it does not support at all
        refused = str(e)
    if refused:
        max_bits = s.CoeffModulus.MaxBitCount(n, s.SEC_LEVEL_TYPE.TC128)
        limit = (f"its limit for this N is {max_bits} bits" if max_bits
                 else "its security table has no entry for this N")
        base["skipped"] = (f"SEAL refuses N=2^{args.log_n} with {sum(bits)}-bit QP at 128-bit "
                           f"security ({refused}; {limit})")
        base["machine"] = monitor.report()
        print_skip(base, args.json)
        return 0

    keygen = s.KeyGenerator(ctx)
    pk = s.PublicKey()
    keygen.create_public_key(pk)
    rk = s.RelinKeys()
    keygen.create_relin_keys(rk)
    gk = s.GaloisKeys()
    # The list overload that pybind picks takes Galois elements, not steps: left rotation by k
    # is the automorphism X -> X^(3^k mod 2N).
    keygen.create_galois_keys([pow(3, 1, 2 * n)], gk)
    encoder = s.CKKSEncoder(ctx)
    encryptor = s.Encryptor(ctx, pk)
    decryptor = s.Decryptor(ctx, keygen.secret_key())
    ev = s.Evaluator(ctx)

    rnd = random.Random(args.seed)
    x = [rnd.uniform(-1.0, 1.0) for _ in range(slots)]
    y = [rnd.uniform(-1.0, 1.0) for _ in range(slots)]

    def encode_encrypt(_):
        pt = s.Plaintext()
        encoder.encode(x, scale, pt)
        ct = s.Ciphertext()
        encryptor.encrypt(pt, ct)
        return ct

    def decrypt(ct):
        pt = s.Plaintext()
        decryptor.decrypt(ct, pt)
        return encoder.decode_double(pt)

    pt_y = s.Plaintext()
    encoder.encode(y, scale, pt_y)
    ct_x = encode_encrypt(None)
    ct_y = s.Ciphertext()
    encryptor.encrypt(pt_y, ct_y)

    def mul_relin(out):
        ev.multiply(ct_x, ct_y, out)
        ev.relinearize_inplace(out, rk)
        return out

    ct_xy = mul_relin(s.Ciphertext())  # input of the rescale timing: scale 2^80

    def rescaled(ct):
        out = s.Ciphertext()
        ev.rescale_to_next(ct, out)
        return out

    def binary(op, a, b):
        out = s.Ciphertext()
        op(a, b, out)
        return out

    def rotated(_):
        out = s.Ciphertext()
        ev.rotate_vector(ct_x, 1, gk, out)
        return out

    r = args.reps
    fresh = s.Ciphertext
    samples = {
        "encode_encrypt": time_op(encode_encrypt, r),
        "decrypt_decode": time_op(lambda _: decrypt(ct_x), r),
        "add": time_op(lambda out: ev.add(ct_x, ct_y, out), r, fresh),
        "mul_plain": time_op(lambda out: ev.multiply_plain(ct_x, pt_y, out), r, fresh),
        "mul_relin": time_op(mul_relin, r, fresh),
        "rescale": time_op(lambda out: ev.rescale_to_next(ct_xy, out), r, fresh),
        "rotate": time_op(lambda out: ev.rotate_vector(ct_x, 1, gk, out), r, fresh),
        "hoisted_rotate": None,
    }

    tol = 1e-4
    xy = [a * b for a, b in zip(x, y)]
    checks = {
        "encode_encrypt+decrypt_decode": max_err(decrypt(encode_encrypt(None)), x),
        "add": max_err(decrypt(binary(ev.add, ct_x, ct_y)), [a + b for a, b in zip(x, y)]),
        "mul_plain+rescale": max_err(decrypt(rescaled(binary(ev.multiply_plain, ct_x, pt_y))), xy),
        "mul_relin+rescale": max_err(decrypt(rescaled(ct_xy)), xy),
        "rotate": max_err(decrypt(rotated(None)), x[1:] + x[:1]),
    }
    bad = {k: v for k, v in checks.items() if not v < tol}
    if bad:
        print(f"seal_bench: wrong results (max abs error >= {tol}): {bad}", file=sys.stderr)
        return 1

    med, low = summarize(samples)
    base["max_abs_error"] = max(checks.values())
    base["machine"] = monitor.report()
    print_result({"params": base, "ops_ms": med, "ops_min_ms": low}, args.json)
    return 0


def print_skip(params, as_json):
    if as_json:
        print(json.dumps({"params": params, "ops_ms": {op: None for op in OPS}}, indent=2))
    else:
        print(f"SEAL: skipped: {params['skipped']}")


if __name__ == "__main__":
    sys.exit(main())
