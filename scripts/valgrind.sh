#!/usr/bin/env bash
# The PHPUnit suite under valgrind memcheck, against the built extension:
# `make valgrind` (not part of `make test`: it takes several minutes).
#
#   USE_ZEND_ALLOC=0            PHP allocates with malloc, so memcheck checks
#                               PHP's heap as well as the extension's
#   ZEND_DONT_UNLOAD_MODULES=1  the .so stays mapped at exit: stacks keep symbols
#   pcre.jit=0                  memcheck cannot follow PCRE's JIT code and
#                               reports its vector reads (thousands, all PHP's)
#   --exclude-group slow        skips the 1M-row memory and sheet-limit tests,
#                               hours under valgrind; the rest of the suite runs
#   --exclude-group fatal-error skips the tests that end a script with a fatal
#                               error mid-call: PHP never releases the objects
#                               the skipped frames held (it calls their free
#                               handlers, then drops its heap whole), which
#                               memcheck counts as lost Exporter objects
#                               (RELIABILITY.md: checked by hand, no other
#                               report)
#   scripts/valgrind.supp       reports analysed and found not to be bugs
#
# The child `php` processes the tests start run under valgrind too; Python,
# s3s-fs and shells do not. Every memcheck error (definite leaks included)
# is counted; the run fails when one has a frame of the extension
# (libfluxo.so) in its stack, or when PHPUnit fails. Extra arguments go to
# PHPUnit (e.g. --filter ValuesTest).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/fluxo/target}"
SO="${FLUXO_SO:-$TARGET/php/libfluxo.so}"
DIR="${VALGRIND_DIR:-$TARGET/valgrind}"
[[ -f "$SO" ]] || { echo "valgrind: $SO is missing: run make build" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; exit 1; }
rm -rf "$DIR"
mkdir -p "$DIR/conf.d"
# Child processes get pcre.jit=0 through the scan dir (":" keeps Debian's).
echo "pcre.jit=0" > "$DIR/conf.d/valgrind.ini"

set +e
PHP_INI_SCAN_DIR=":$DIR/conf.d" USE_ZEND_ALLOC=0 ZEND_DONT_UNLOAD_MODULES=1 FLUXO_SO="$SO" \
    valgrind --tool=memcheck --error-limit=no --num-callers=40 \
    --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --trace-children=yes --trace-children-skip='*python*,*s3s-fs*,*moto*,*/sh,*/bash,*/dash,*/env,*/openssl' \
    --suppressions=scripts/valgrind.supp \
    --log-file="$DIR/memcheck.%p.log" --xml=yes --xml-file="$DIR/memcheck.%p.xml" \
    php -d extension="$SO" /usr/bin/phpunit -c php-tests/phpunit.xml --exclude-group slow,fatal-error "$@"
phpunit=$?
set -e

echo "valgrind: logs in $DIR"
# An error is the extension's when a frame of its stack is in libfluxo.so.
python3 - "$DIR" <<'PY'
import glob, os, re, sys, xml.etree.ElementTree as ET
# A file may hold several XML documents (a forked child writes its preamble
# to its parent's file before exec) or a cut one (a test kills its child):
# read the <error> records one by one.
errors, pids = [], set()
for path in glob.glob(os.path.join(sys.argv[1], "memcheck.*.xml")):
    text = open(path, errors="replace").read()
    # The file's own process comes first; later preambles are forks of it.
    first = re.search(r"<pid>(\d+)</pid>.*?<argv>\s*<exe>([^<]*)</exe>", text, re.S)
    if first and "php" in os.path.basename(first.group(2)):
        pids.add(first.group(1))
    errors += [ET.fromstring(b) for b in re.findall(r"<error>.*?</error>", text, re.S)]
ours = [e for e in errors if any("libfluxo.so" in (f.findtext("obj") or "") for f in e.iter("frame"))]
kinds = {}
for e in errors:
    kinds[e.findtext("kind")] = kinds.get(e.findtext("kind"), 0) + 1
print(f"valgrind: {len(pids)} php processes, {len(errors)} memcheck errors {kinds or ''}, {len(ours)} with a libfluxo.so frame")
for e in ours:
    print("  ", e.findtext("kind"), e.findtext("what") or e.findtext("xwhat/text"))
sys.exit(1 if ours else 0)
PY
exit "$phpunit"
