#!/usr/bin/env bash
# Installs what Tributary needs to build, test and run, idempotently, into a cache folder
# outside the clone. A second run downloads nothing.
#
#   TRIBUTARY_CACHE   where tools live (default: ${XDG_CACHE_HOME:-$HOME/.cache}/tributary)
#
# Prints `export` lines for the environment the build needs (see the Makefile).
#
#   scripts/setup.sh           what the build, the demo and the tests need
#   scripts/setup.sh --demo    only what the build and `tributary demo` need: anvil, solc-js,
#                              the GraphiQL page's assets and torch (no test-only tools)
#   scripts/setup.sh --bench   the tests' tools and the benchmarks' references (foundry's cast)
set -euo pipefail
bench=0; [ "${1:-}" = --bench ] && bench=1
tests=1; [ "${1:-}" = --demo ] && tests=0

ANVIL_VERSION=1.7.1
SOLC_VERSION=0.8.37
TORCH_VERSION=2.11.0
ETH_ACCOUNT_VERSION=0.14.0        # interop tests: a standard EIP-712 wallet library
OZ_MERKLE_VERSION=1.0.8           # interop tests: OpenZeppelin's StandardMerkleTree
MOTO_VERSION=5.2.5                # object-storage tests: an S3-compatible server (moto_server)
GRAPHIQL_VERSION=3.9.0            # the GraphiQL page's assets, served locally (no CDN needed)
REACT_VERSION=18.3.1              # GraphiQL 3 runs on React 18's browser (UMD) builds
DAGRE_VERSION=3.1.4               # the explorer's lineage picture: layered DAG layout, served locally
SELENIUM_VERSION=4.38.0           # browser tests: drives headless Chromium (Debian's chromium)
TRANSFORMERS_VERSION=5.24.0       # interop tests: Hugging Face checkpoints the trainer must load
PEFT_VERSION=0.21.2               # interop tests: PEFT must load the adapters the trainer writes
OPENAI_VERSION=3.57.0             # interop tests: the official OpenAI client against `tributary serve`
OPENLINEAGE_VERSION=1.54.0        # tests: OpenLineage events checked against the spec the package pins
JSONSCHEMA_VERSION=4.26.0

cache="${TRIBUTARY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary}"
mkdir -p "$cache"
log() { printf 'setup: %s\n' "$*" >&2; }

# --- anvil and solc-js from the npm registry --------------------------------------------
tools="$cache/npm"
stamp="$tools/.installed-anvil-$ANVIL_VERSION-solc-$SOLC_VERSION"
if [ ! -f "$stamp" ]; then
  command -v npm >/dev/null || { log "npm is missing: install Node.js 20+ (apt-get install nodejs npm)"; exit 1; }
  log "installing anvil $ANVIL_VERSION and solc $SOLC_VERSION into $tools"
  mkdir -p "$tools"
  [ -f "$tools/package.json" ] || echo '{"name":"tributary-tools","private":true}' > "$tools/package.json"
  npm install --silent --no-audit --no-fund --prefix "$tools" \
    "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION" "solc@$SOLC_VERSION" >&2
  touch "$stamp"
fi
stamp="$tools/.installed-ozmerkle-$OZ_MERKLE_VERSION"
if [ "$tests" = 1 ] && [ ! -f "$stamp" ]; then
  log "installing @openzeppelin/merkle-tree $OZ_MERKLE_VERSION into $tools (interop tests)"
  npm install --silent --no-audit --no-fund --prefix "$tools" \
    "@openzeppelin/merkle-tree@$OZ_MERKLE_VERSION" >&2
  touch "$stamp"
fi
anvil_bin=$(find "$tools/node_modules/@foundry-rs/anvil-linux-amd64" -type f -name anvil | head -1)
chmod +x "$anvil_bin"
stamp="$tools/.installed-graphiql-$GRAPHIQL_VERSION-react-$REACT_VERSION"
if [ ! -f "$stamp" ]; then
  log "installing graphiql $GRAPHIQL_VERSION and react $REACT_VERSION into $tools (the GraphiQL page)"
  npm install --silent --no-audit --no-fund --prefix "$tools" "graphiql@$GRAPHIQL_VERSION" \
    "react@$REACT_VERSION" "react-dom@$REACT_VERSION" >&2
  touch "$stamp"
fi
stamp="$tools/.installed-dagre-$DAGRE_VERSION"
if [ ! -f "$stamp" ]; then
  log "installing @dagrejs/dagre $DAGRE_VERSION into $tools (the explorer's lineage picture)"
  npm install --silent --no-audit --no-fund --prefix "$tools" "@dagrejs/dagre@$DAGRE_VERSION" >&2
  touch "$stamp"
fi
cast_bin=""
if [ "$bench" = 1 ]; then
  stamp="$tools/.installed-cast-$ANVIL_VERSION"
  if [ ! -f "$stamp" ]; then
    log "installing cast $ANVIL_VERSION into $tools (the indexer benchmark's reference)"
    npm install --silent --no-audit --no-fund --prefix "$tools" "@foundry-rs/cast-linux-amd64@$ANVIL_VERSION" >&2
    touch "$stamp"
  fi
  cast_bin=$(find "$tools/node_modules/@foundry-rs/cast-linux-amd64" -type f -name cast | head -1)
  chmod +x "$cast_bin"
fi

# --- libtorch through PyPI's torch wheel, in a venv --------------------------------------
venv="$cache/venv"
stamp="$venv/.installed-torch-$TORCH_VERSION"
if [ ! -f "$stamp" ]; then
  log "installing torch==$TORCH_VERSION into $venv (about 3 GB, once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "torch==$TORCH_VERSION" >&2
  touch "$stamp"
fi
# The tests' tools (not for --demo): `pip_once NAME WHY PACKAGE...` installs PACKAGEs into the
# venv once (a stamp file named after NAME records it).
pip_once() {
  local stamp="$venv/.installed-$1" why="$2"; shift 2
  if [ ! -f "$stamp" ]; then
    log "installing $* into $venv ($why)"
    "$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "$@" >&2
    touch "$stamp"
  fi
}
if [ "$tests" = 1 ]; then
  pip_once "eth-account-$ETH_ACCOUNT_VERSION" "interop tests" "eth-account==$ETH_ACCOUNT_VERSION"
  pip_once "moto-$MOTO_VERSION" "object-storage tests" "moto[server]==$MOTO_VERSION"
  pip_once "selenium-$SELENIUM_VERSION" "browser tests" "selenium==$SELENIUM_VERSION"
  pip_once "transformers-$TRANSFORMERS_VERSION-peft-$PEFT_VERSION" "model interop tests" \
    "transformers==$TRANSFORMERS_VERSION" "peft==$PEFT_VERSION" "torch==$TORCH_VERSION"
  pip_once "openai-$OPENAI_VERSION" "inference interop tests" "openai==$OPENAI_VERSION"
  pip_once "openlineage-$OPENLINEAGE_VERSION-jsonschema-$JSONSCHEMA_VERSION" "OpenLineage tests" \
    "openlineage-python==$OPENLINEAGE_VERSION" "jsonschema==$JSONSCHEMA_VERSION" \
    "rfc3339-validator==0.1.4" "rfc3986-validator==0.1.1"
fi
# Found without importing torch: the import warns on stderr where numpy is not installed
# (`--demo` installs torch alone).
torch_lib=$("$venv/bin/python" -c 'import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec("torch").origin),"lib"))')

# --- PostgreSQL server binaries (tests start a private server) ---------------------------
if ! pg_bin=$(dirname "$(dpkg -L postgresql-15 2>/dev/null | grep '/bin/initdb$' | head -1)" 2>/dev/null) || [ ! -x "$pg_bin/initdb" ]; then
  if [ "${TRIBUTARY_SKIP_POSTGRES:-0}" != 1 ] && [ "$tests" = 1 ]; then
    log "installing postgresql-15 (Debian package)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-15 >&2
    $SUDO apt-get clean >&2   # the downloaded .deb files are not needed again
    pg_bin=$(dirname "$(dpkg -L postgresql-15 | grep '/bin/initdb$' | head -1)")
  fi
fi

# --- Chromium and its WebDriver (tests load the GraphiQL page headless) -------------------
chromium_bin=$(command -v chromium || true)
chromedriver_bin=$(command -v chromedriver || true)
if [ -z "$chromium_bin" ] || [ -z "$chromedriver_bin" ]; then
  if [ "${TRIBUTARY_SKIP_CHROMIUM:-0}" != 1 ] && [ "$tests" = 1 ]; then
    log "installing chromium and chromium-driver (Debian packages; browser tests)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >&2
    $SUDO apt-get clean >&2   # the downloaded .deb files are not needed again
    chromium_bin=$(command -v chromium)
    chromedriver_bin=$(command -v chromedriver)
  fi
fi

cat <<OUT
export TRIBUTARY_ANVIL=$anvil_bin
export TRIBUTARY_CAST=$cast_bin
export TRIBUTARY_SOLC_JS=$tools/node_modules/solc
export TRIBUTARY_NODE_MODULES=$tools/node_modules
export TRIBUTARY_PYTHON=$venv/bin/python
export TRIBUTARY_MOTO=$venv/bin/moto_server
export TRIBUTARY_PG_BIN=${pg_bin:-}
export TRIBUTARY_CHROMIUM=$chromium_bin
export TRIBUTARY_CHROMEDRIVER=$chromedriver_bin
export LIBTORCH_USE_PYTORCH=1
export TRIBUTARY_TORCH_LIB=$torch_lib
export PATH=$venv/bin:\$PATH
OUT
