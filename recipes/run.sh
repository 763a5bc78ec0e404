#!/usr/bin/env bash
# asr-kd recipe: from a LibriSpeech-layout corpus to the paper's tables.
#
# Usage: recipes/run.sh [--option value ...]
#   --preset NAME        tiny | mini | mini_aug | mini_transfer | paper (reads recipes/conf/NAME.conf first)
#   --corpus-dir DIR     an existing LibriSpeech-layout corpus (DIR/LibriSpeech/ or LibriSpeech/ itself);
#                        empty = synthesize one
#   --train-parts P,P    training parts, joined into one training set (default train-clean-100; e.g.
#                        train-clean-100,train-clean-360,train-other-500 for LibriSpeech's 960 h)
#   --dev-parts P,P      dev parts (default dev-clean; LibriSpeech has dev-clean,dev-other): the first chooses the
#                        LM weights and is the networks' dev bank; the others are decoded and reported as test
#                        parts are, at its weight
#   --test-parts P,P     test parts, all decoded at dev's LM weight (default test-clean,test-other). In the
#                        synthesized corpus test-other is the never-heard set (test-clean's sentences, voices of a
#                        family no other split uses); in LibriSpeech, its harder test set. Every dev and test part
#                        is also aligned by tri2 and frame-scored where its transcripts can be aligned (the first
#                        dev and test parts must be). Test and dev audio at any sample rate is resampled to 16 kHz.
#   --lexicon FILE       'WORD PH1 PH2 ...' lexicon (librispeech-lexicon.txt), CMUdict for words it lacks;
#                        empty: CMUdict alone
#   --lm-text FILE       LM training text, plain or .gz (librispeech-lm-norm.txt.gz); empty: <corpus>/lm-text.txt
#   --arpa FILE          an ARPA LM, plain or .gz (3-gram.pruned.1e-7.arpa.gz), used as G instead of training one
#   --lm-prune-threshold X  entropy-prune G's ARPA; empty: 1e-6 for a trained LM, none for a given --arpa
#   --exp-dir DIR        where every output goes
#   --stage N            first stage to run;  --stop-stage N  last stage to run
#   --num-workers N      parallel processes
#   --train-jobs N|auto  networks trained at once in stages 5-6 and in stage 9, each on (cores / N) CPU threads; auto:
#                        one per CPU core, at most num_members, when the networks train on the CPU; 1 on a GPU
#   --seed N             corpus synthesis seed
#   --transfer-part P    a part whose audio, unlabelled, joins the student's transfer set (the ensemble labels it);
#                        the synthesized corpus's is train-clean-360, of --corpus-transfer-hours H hours
#   --student-epoch E    train: each student epoch draws bank/train's number of frames (the baseline's updates);
#                        transfer: one pass over its transfer set (more updates when the set is larger)
#   --train-copies P,P   perturbed copies of train (asr-kd augment-data --perturbations: sp0.9,sp1.1,volume,noise,babble,
#                        reverb,narrowband,revoice,revoice2,...) that baseline, members and student train on beside it;
#                        each epoch still draws train's number of frames; --train-mix-shares original=0.5 fixes train's share
#   --student-mix-shares S  the student's shares by group of its transfer bank (empty: --train-mix-shares'); with
#                        --transfer-part its unlabelled audio is in the group `original` with train
#   --augment SPEC       window augmentation of baseline, members and student (asr-kd train --augment, e.g.
#                        freq_mask=8,time_mask=5: SpecAugment-style masks); needs --soft-targets online
#   --net-seed N         network seed: baseline (= member 1) and student N, member m>1 100*N+m, the 3% models
#                        100*N+50 (no teacher's: a 3% student must not start from its teacher's initial weights)
#   (every variable of recipes/conf/<preset>.conf is an option too: --num-members 4, --temperature 5 ...)
# Stages:
#   0  synthesize the embedded corpus (skipped when --corpus-dir is given)
#   1  lhotse manifests, 40-dim fbank (dev/test resampled to 16 kHz if need be), CMVN stats (global, per
#      speaker, per utterance)
#   2  LM text (sampled to lm_text_lines), lang (lexicon file and/or CMUdict for the transcript and LM
#      words), n-gram LM trained on the LM text or the given --arpa -> lang_test/G.fst, dev perplexity
#   3  GMM-HMM mono -> tri1 -> tri2, alignments of train and every dev/test part, HCLG, GMM decode of every
#      dev and test part
#   4  frame banks from the tri2 alignments, inputs normalised by input_norm: bank/train, bank/dev (the first dev
#      part), bank/test (the first test part) and bank/<part> for every other aligned part; with train_copies,
#      the perturbed copies of train (train_copies/, speed and voice copies aligned by tri2) and bank/train_copies
#      (train and its copies); with transfer_part, bank/transfer: those training frames plus that part's, unlabelled
#   5  baseline frame classifier on 100% of train (and its copies)
#   6  the ensemble: num_members models that differ in their seed only, the baseline (stage 5) the first
#   7  the ensemble's soft targets at temperature T for the transfer set (or the training bank), stored top-k
#   8  the distilled student (T, hard_weight) under the baseline's schedule, epochs of the baseline's size (or one
#      pass over the transfer set: student_epoch)
#   9  3% of train (paper Table 5): hard labels with early stopping; soft targets of the full-data
#      baseline without (hard-label weight subset_hard_weight); and of the ensemble; with subset_copies, the
#      two soft-target models also train on perturbed copies of the subset's utterances (subset_copies/)
#  10  hybrid decoding of baseline / ensemble / student on every dev and test part, frame accuracies on every bank
#  11  RESULTS.md (paper Table 1 and Table 5 forms, plots) in the experiment dir
# A finished stage leaves $exp_dir/.stageN.done and is skipped when the recipe is rerun.
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
preset=mini
corpus_dir=""
exp_dir=""
stage=0
stop_stage=100
num_workers=2
seed=0
net_seed=1
corpus_size=""        # stage 0: the synthesized corpus's size (asr-kd synth-corpus --size)
corpus_transfer_hours=""  # stage 0: hours of unlabelled train-clean-360 audio it adds (--transfer-part train-clean-360 uses them); empty: the size's own
train_parts=train-clean-100
dev_parts=dev-clean
test_parts=test-clean,test-other
# The language side; empty: CMUdict, and an LM trained on the corpus's own lm-text.txt.
lexicon=""; lm_text=""; arpa=""; lm_prune_threshold=""
# Defaults of the stages' settings; recipes/conf/<preset>.conf sets them per preset.
lm_order=3; lm_text_lines=0   # 0: the whole LM text; N: a sample of N sentences (smaller G and HCLG)
mono_iters=25; mono_gauss=1000; mono_utts=1000
tri1_iters=20; tri1_leaves=2000; tri1_gauss=10000
tri2_iters=20; tri2_leaves=2500; tri2_gauss=15000
input_norm=speaker    # network inputs: global | speaker | speaker_mvn | speaker_cepstral_mvn | speaker_cepstral_match | utterance, then global CMVN
transfer_part=""      # a corpus part whose audio (no transcripts, no alignments) joins the student's transfer set
student_epoch=train   # train: a student epoch draws the baseline's frames (train_epoch_scale x bank/train's); transfer: one pass over its transfer set
model_shape=small     # hidden layers x width: a named shape (tiny, small, medium, paper) or LxW, e.g. 3x512
input_lifter=0        # every network keeps the first N cepstral coefficients of each input frame (train --input-lifter); 0: all
num_epochs=10; batch_size=1024; lr=0.08; min_lr=0; optimizer=sgd; lr_schedule=newbob
# newbob (Kaldi nnet1): halve the LR once an epoch gains less dev frame accuracy than newbob_start_gain (a
# fraction: 0.005 is half a point), stop once a halving epoch gains less than newbob_end_gain.
newbob_start_gain=0.005; newbob_end_gain=0.0005
device=auto; amp=auto
# Two 1-thread trainers on 2 cores get through 1.3-1.4x the epochs of one 2-thread trainer (bench/RESULTS.md).
train_jobs=auto
num_members=10
soft_targets=stored   # stored: top-k file beside the frame bank; online: members run during training
teacher_mean=arithmetic; temperature=2; hard_weight=0.5; top_k=auto
subset_fraction=0.03; subset_seed=0; subset_num_epochs=30; early_stopping_patience=3
subset_batch_size=""   # empty: batch_size; a subset too small for many steps per epoch wants smaller batches
augment=none           # window augmentation of the full-data networks (train --augment: freq_mask=F,time_mask=T,noise=S,...)
subset_augment=none    # window augmentation of the soft-target 3% students (train --augment); their teacher labels the perturbed input
subset_dev_every=1     # the soft-target 3% students (blind to dev) evaluate dev after every N-th epoch and the last
subset_lr_schedule=cosine  # the 3% models' schedule, blind to dev whatever lr_schedule the full-data networks use
subset_hard_weight=""  # hard-label weight of the soft-target 3% students; empty: hard_weight
# Perturbed copies of train (asr-kd augment-data --perturbations, comma-separated) that the full-data networks
# (baseline, members, student) train on beside it; empty: train alone. Every epoch still draws bank/train's number
# of frames, so the copies change what the networks see, not how many updates they make.
train_copies=""
# With train_copies: fixed shares of every epoch by group (asr-kd train --mix-shares), e.g. original=0.5 keeps half
# of each epoch on train itself; empty: drawn uniformly from train and the copies.
train_mix_shares=""
# With train_copies: the student's shares by group of its transfer bank; empty: train_mix_shares. With transfer_part the
# unlabelled audio is in the group `original` beside train (its cuts are no copies), so original=0.5 gives the two
# half of every student epoch and the copies the rest.
student_mix_shares=""
# With train_copies: each epoch of the full-data networks draws this many times bank/train's frames (a whole number;
# 1: the copies change the data, not the updates). 4 with train_mix_shares original=0.125 keeps train itself at half
# its frames per epoch and gives the copies the rest (egs/synth/AUGMENT.md, "The same copies under speaker_mvn").
train_epoch_scale=1
# Perturbed copies of the 3% utterances (asr-kd augment-data --perturbations, comma-separated) that the
# soft-target 3% students train on beside them, their teacher labelling each copy; empty: none
subset_copies=""
# LM weights tried on dev (acoustic scale 1/w): GMM likelihoods want larger weights than network posteriors.
lm_weights=6,8,10,12,14; gmm_lm_weights=10,12,14,16,18,20,22; decode_beam=13; decode_max_active=7000
# When dev's best weight is at an edge of the list, up to this many more weights past it (decode --extend-lm-weights).
lm_weight_extend=2
# Word insertion penalties swept on dev with the LM weights (decode --word-ins-penalties; Kaldi's score.sh: 0,0.5,1).
# Each one more decodes dev at every LM weight; the networks' and the GMM's decodes alike.
word_ins_penalties=0
# When dev's best penalty is the top of that list, up to this many more above it (decode --extend-word-ins-penalties).
word_ins_penalty_extend=2
# The GMM's own search (stage 3); empty: the networks' beam and max-active.
gmm_decode_beam=""; gmm_decode_max_active=""
# 1-best search: the bindings give no lattice to rescore, and "faster" finds the same best path ~1/3 cheaper.
decoder=faster

# The preset's config first, so that explicit options override it.
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--preset" ]; then j=$((i + 1)); preset=${!j}; fi
done
[ -f "$recipe_dir/conf/$preset.conf" ] || { echo "$0: no preset '$preset' in $recipe_dir/conf" >&2; exit 2; }
. "$recipe_dir/conf/$preset.conf"
. "$recipe_dir/parse_options.sh"

exp_dir=${exp_dir:-exp/$preset}
if [ -n "$transfer_part" ] && [[ ",$train_parts," == *",$transfer_part,"* ]]; then
  echo "$0: the transfer part $transfer_part is also a training part; give --transfer-part \"\" or other --train-parts" >&2
  exit 2
fi
for p in ${test_parts//,/ }; do
  if [[ ",$train_parts,$transfer_part," == *",$p,"* ]]; then
    echo "$0: the test part $p is also a training or transfer part; give other --test-parts" >&2
    exit 2
  fi
done
for p in ${dev_parts//,/ }; do
  if [[ ",$train_parts,$transfer_part,$test_parts," == *",$p,"* ]]; then
    echo "$0: the dev part $p is also a training, transfer or test part; give other --dev-parts" >&2
    exit 2
  fi
done
if [ "$augment" != none ] && [ "$soft_targets" = stored ]; then
  echo "$0: --augment $augment perturbs the student's windows, but stored soft targets are its teacher's view of the" \
    "unperturbed ones: give --soft-targets online (the members label each perturbed window)" >&2
  exit 2
fi
if [ "$student_epoch" != train ] && [ "$student_epoch" != transfer ]; then
  echo "$0: --student-epoch $student_epoch: give train (bank/train's number of frames per epoch) or transfer (one pass" \
    "over the student's transfer set)" >&2
  exit 2
fi
if ! [[ "$train_epoch_scale" =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: --train-epoch-scale $train_epoch_scale: give a whole number >= 1 (times bank/train's frames per epoch)" >&2
  exit 2
fi
if [ "$train_epoch_scale" != 1 ] && [ -z "$train_copies" ]; then
  echo "$0: --train-epoch-scale $train_epoch_scale needs --train-copies (without copies an epoch is a pass over train)" >&2
  exit 2
fi
for shares in train_mix_shares student_mix_shares; do
  if [ -n "${!shares}" ] && [ -z "$train_copies" ]; then
    echo "$0: --${shares//_/-} ${!shares} needs --train-copies (the groups it shares out are train and its copies)" >&2
    exit 2
  fi
done
if [ "$num_members" -lt 1 ] || [ "$num_members" -ge 50 ]; then
  echo "$0: --num-members $num_members: give 1-49 (member m's seed is 100*net_seed+m; the 3% models' 100*net_seed+50)" >&2
  exit 2
fi
# The networks' shape and lifter, window augmentations, copies and shares, by the parsers that take them: refused
# now, not at the stage that reaches them (--train-mix-shares and --student-mix-shares are checked as --mix-shares,
# --subset-augment as --augment).
python -m asr_kd.bin.check_options --model-shape "$model_shape" --input-lifter "$input_lifter" --augment "$augment" \
  --augment "$subset_augment" --train-copies "$train_copies" --train-copies "$subset_copies" \
  --mix-shares "$train_mix_shares" --mix-shares "$student_mix_shares" || exit 2
# Several training parts become one training set, named by joining them with '+' (stage 1).
train_set=${train_parts//,/+}
# The first dev part chooses the LM weight and is bank/dev; the first test part is bank/test ("test" in the
# decodes). Both must align, as train must.
dev_part=${dev_parts%%,*}
test_part=${test_parts%%,*}
parts="$train_set $dev_part $test_part"
# The other test parts, then the other dev parts: decoded at dev's weight under their own names, and aligned
# and frame-scored (bank/<part>) where they can be.
other_tests=${test_parts#"$test_part"}
other_devs=${dev_parts#"$dev_part"}
# shellcheck disable=SC2086
more_parts=$(echo ${other_tests//,/ } ${other_devs//,/ })
decode_parts="$dev_part ${test_parts//,/ }${other_devs//,/ }"
data_parts="${train_parts//,/ } $decode_parts${transfer_part:+ $transfer_part}"

results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"

log "preset: $preset (recipes/conf/$preset.conf, then the options given)"
# Where the networks will run and in which precision; a warning when that is fp32 on a CPU without bf16 units.
hardware=$(python -m asr_kd.bin.hardware --device "$device" --amp "$amp")
while IFS= read -r line; do log "$line"; done <<< "$hardware"

if [ -z "$corpus_dir" ]; then
  corpus_dir=$exp_dir/corpus
  if run_stage 0; then
    log "Stage 0: synthesize the '$corpus_size' corpus into $corpus_dir"
    python -m asr_kd.bin.synth_corpus --out-dir "$corpus_dir" --size "$corpus_size" \
      ${corpus_transfer_hours:+--transfer-hours "$corpus_transfer_hours"} --seed "$seed" --num-workers "$num_workers"
    touch "$exp_dir/.stage0.done"
  fi
fi

if run_stage 1; then
  log "Stage 1: lhotse manifests, 40-dim fbank and CMVN stats of $corpus_dir"
  if [ -n "$transfer_part" ] && [ "$corpus_dir" = "$exp_dir/corpus" ] && [ ! -d "$corpus_dir/LibriSpeech/$transfer_part" ]; then
    echo "$0: the synthesized corpus $corpus_dir has no $transfer_part audio (it was made without" \
      "--corpus-transfer-hours, and a finished corpus is not extended): run into a new --exp-dir, or give --transfer-part \"\"" >&2
    exit 2
  fi
  # shellcheck disable=SC2086
  python -m asr_kd.bin.prepare_data --corpus-dir "$corpus_dir" --exp-dir "$exp_dir" \
    --parts $data_parts --train-parts ${train_parts//,/ } --decode-parts $decode_parts --num-workers "$num_workers"
  touch "$exp_dir/.stage1.done"
fi


ls_dir=$corpus_dir/LibriSpeech
[ -d "$ls_dir" ] || ls_dir=$corpus_dir
lang_dir=$exp_dir/lang
lang_test_dir=$exp_dir/lang_test
gmm_dir=$exp_dir/gmm
ali_dir=$gmm_dir/tri2/ali
graph_dir=$gmm_dir/tri2/graph
bank_dir=$exp_dir/bank
nnet_dir=$exp_dir/nnet
members=$(for m in $(seq 1 "$num_members"); do echo "$nnet_dir/member$m/final.pt"; done)
# The CMVN the frame banks were built with; decoding and scoring cuts apply the same one.
cmvn=$bank_dir/cmvn.json
# Stored soft targets belong to this experiment's ensemble (seed runs share bank/, not the store).
soft_dir=$exp_dir/soft_T$temperature
# The full-data networks' training bank: train, or train and its perturbed copies (labelled like it).
net_train_bank=$bank_dir/train
net_train_cuts=$ali_dir/cuts_$train_set.jsonl.gz
if [ -n "$train_copies" ]; then
  net_train_bank=$bank_dir/train_copies
  net_train_cuts=$exp_dir/train_copies/cuts_train.jsonl.gz
fi
# The student's transfer set: that bank, plus the unlabelled part when there is one.
transfer_bank=$net_train_bank
[ -n "$transfer_part" ] && transfer_bank=$bank_dir/transfer


# Options shared by every frame-classifier training run.
train_opts=(--frame-bank "$bank_dir" --model-shape "$model_shape" --batch-size "$batch_size" --lr "$lr" --min-lr "$min_lr"
  --optimizer "$optimizer" --lr-schedule "$lr_schedule" --newbob-start-gain "$newbob_start_gain"
  --newbob-end-gain "$newbob_end_gain" --device "$device" --amp "$amp")
[ "$input_lifter" = 0 ] || train_opts+=(--input-lifter "$input_lifter")
# The teacher of the full-data student: stored soft targets, or the members themselves run online.
if [ "$soft_targets" = stored ]; then
  teacher_opts=(--soft-targets-dir "$soft_dir")
else
  # shellcheck disable=SC2206
  teacher_opts=(--teacher-checkpoints $members --teacher-mean "$teacher_mean")
fi

if run_stage 2; then
  log "Stage 2: lang dir from ${lexicon:+$lexicon and }CMUdict over the corpus words; G.fst from ${arpa:-a ${lm_order}-gram LM on ${lm_text:-the corpus LM text}} (dev perplexity)"
  lm_dir=$exp_dir/lm
  mkdir -p "$lm_dir"
  # The vocabulary: every transcript word (dev/test included, as with LibriSpeech's lexicon), the LM
  # text's words, and with --arpa the ARPA's words.
  cat "$ls_dir"/*/*/*/*.trans.txt | cut -d' ' -f2- > "$lm_dir/transcripts.txt"
  cat "$ls_dir/$dev_part"/*/*/*.trans.txt > "$lm_dir/dev-transcripts.txt"
  lang_opts=(--text "$lm_dir/transcripts.txt")
  lm_opts=(--dev-text "$lm_dir/dev-transcripts.txt" --dev-has-ids)
  if [ -n "$lm_text" ] || [ -z "$arpa" ]; then
    # A sample of lm_text_lines sentences spans all the text yet keeps G and HCLG small.
    step prepare_lm_text python -m asr_kd.bin.prepare_lm_text --corpus-dir "$corpus_dir" ${lm_text:+--lm-text "$lm_text"} \
      --num-lines "$lm_text_lines" --out "$lm_dir/lm-text.txt"
    lang_opts+=(--text "$lm_dir/lm-text.txt")
    lm_opts+=(--text "$lm_dir/lm-text.txt")
  fi
  [ -n "$arpa" ] && lang_opts+=(--arpa "$arpa") && lm_opts+=(--arpa "$arpa")
  [ -n "$lexicon" ] && lang_opts+=(--lexicon "$lexicon")
  [ -n "$lm_prune_threshold" ] && lm_opts+=(--prune-threshold "$lm_prune_threshold")
  step prepare_lang python -m asr_kd.bin.prepare_lang "${lang_opts[@]}" --lang-dir "$lang_dir" --oov-to-unk
  step train_lm python -m asr_kd.bin.train_lm "${lm_opts[@]}" --lang-dir "$lang_dir" \
    --lm-dir "$lm_dir" --lang-test-dir "$lang_test_dir" --order "$lm_order"
  touch "$exp_dir/.stage2.done"
fi

if run_stage 3; then
  log "Stage 3: GMM-HMM mono -> tri1 -> tri2 for the frame labels; tri2 alignments, HCLG and its own WER on $dev_parts and $test_parts"
  step train_gmm python -m asr_kd.bin.train_gmm --exp-dir "$exp_dir" --lang-dir "$lang_dir" \
    --cuts "$exp_dir/data/fbank/cuts_$train_set.jsonl.gz" \
    --mono-iters "$mono_iters" --mono-gauss "$mono_gauss" --mono-utts "$mono_utts" \
    --tri1-iters "$tri1_iters" --tri1-leaves "$tri1_leaves" --tri1-gauss "$tri1_gauss" \
    --tri2-iters "$tri2_iters" --tri2-leaves "$tri2_leaves" --tri2-gauss "$tri2_gauss" --num-workers "$num_workers"
  # A synthesized corpus has the true phone times (*.phones.ctm): the alignments are scored against them.
  align_opts=()
  compgen -G "$ls_dir/*/*/*/*.phones.ctm" > /dev/null && align_opts=(--corpus-dir "$corpus_dir")
  # The other dev and test parts are aligned where their transcripts allow (frame accuracy on them, stage 10).
  # shellcheck disable=SC2206
  [ -n "$more_parts" ] && align_opts+=(--optional-parts $more_parts)
  # shellcheck disable=SC2086
  step align python -m asr_kd.bin.align --exp-dir "$exp_dir" --lang-dir "$lang_dir" --system tri2 \
    --parts $parts "${align_opts[@]}" --num-workers "$num_workers"
  step make_graph python -m asr_kd.bin.make_graph --lang-dir "$lang_test_dir" --model-dir "$gmm_dir/tri2" \
    --graph-dir "$graph_dir"
  # shellcheck disable=SC2086
  step decode_gmm python -m asr_kd.bin.decode_gmm --exp-dir "$exp_dir" --system tri2 \
    --lang-test-dir "$lang_test_dir" --graph-dir "$graph_dir" --parts $decode_parts \
    --lm-weights ${gmm_lm_weights//,/ } --extend-lm-weights "$lm_weight_extend" \
    --word-ins-penalties ${word_ins_penalties//,/ } --extend-word-ins-penalties "$word_ins_penalty_extend" \
    --beam "${gmm_decode_beam:-$decode_beam}" --max-active "${gmm_decode_max_active:-$decode_max_active}" \
    --decoder "$decoder" --num-workers "$num_workers"
  touch "$exp_dir/.stage3.done"
fi

if run_stage 4; then
  log "Stage 4: frame banks ($input_norm-normalised fbank + tri2 pdf-ids, contiguous) of train, dev ($dev_part), test ($test_part)${more_parts:+, $more_parts where aligned}${train_copies:+, train and its copies ($train_copies)}${transfer_part:+, and the transfer set: the training frames + $transfer_part}"
  mkdir -p "$bank_dir"
  case $input_norm in global) norm_file=cmvn.json ;; *) norm_file=cmvn_$input_norm.json ;; esac
  cp "$exp_dir/data/fbank/$norm_file" "$cmvn.tmp" && mv "$cmvn.tmp" "$cmvn"
  for part in $parts $more_parts; do
    case $part in "$train_set") name=train ;; "$dev_part") name=dev ;; "$test_part") name=test ;; *) name=$part ;; esac
    if [ ! -f "$ali_dir/cuts_$part.jsonl.gz" ] && [[ " $more_parts " == *" $part "* ]]; then
      log "Stage 4: $part has no tri2 alignment ($ali_dir/info.json says why): no frame bank, no frame accuracy"
      continue
    fi
    step "bank_$name" python -m asr_kd.bin.build_frame_bank --cuts "$ali_dir/cuts_$part.jsonl.gz" \
      --out-dir "$bank_dir/$name" --cmvn "$cmvn"
  done
  if [ -n "$train_copies" ]; then
    # The speed and voice copies are aligned by tri2, the others keep their source's labels; each copy's speaker
    # (<speaker>_<perturbation>) gets its own means under per-speaker normalisation.
    # shellcheck disable=SC2086
    step augment_train python -m asr_kd.bin.augment_data --cuts "$ali_dir/cuts_$train_set.jsonl.gz" \
      --out-dir "$exp_dir/train_copies" --name train --perturbations ${train_copies//,/ } --gmm-dir "$gmm_dir/tri2" \
      --lang-dir "$lang_dir" --seed "$seed" --num-workers "$num_workers"
    step bank_train_copies python -m asr_kd.bin.build_frame_bank --cuts "$net_train_cuts" --out-dir "$net_train_bank" \
      --cmvn "$cmvn"
  fi
  if [ -n "$transfer_part" ]; then
    step bank_transfer python -m asr_kd.bin.build_frame_bank --cuts "$net_train_cuts" \
      --unlabelled-cuts "$exp_dir/data/fbank/cuts_$transfer_part.jsonl.gz" --out-dir "$transfer_bank" --cmvn "$cmvn"
  fi
  touch "$exp_dir/.stage4.done"
fi

# What the full-data networks (stages 5, 6, 8) share beyond train_opts: their window augmentation, and the shares of
# train and its copies in every epoch (the student's own where student_mix_shares is given).
full_data_opts=(--augment "$augment")
member_mix_opts=()
[ -n "$train_mix_shares" ] && member_mix_opts=(--mix-shares "$train_mix_shares")
student_mix_opts=("${member_mix_opts[@]}")
[ -n "$student_mix_shares" ] && student_mix_opts=(--mix-shares "$student_mix_shares")
# With train_copies, baseline and members train on train and its copies, each epoch drawing train_epoch_scale times
# bank/train's number of frames (at 1 the copies change the data, not the updates); the student has its transfer
# bank (stage 8).
full_data_epoch_frames() { echo $(( $(bank_frames "$bank_dir/train") * train_epoch_scale )); }
copies_bank_opts=()
if [ -n "$train_copies" ] && [ "$stage" -le 6 ] && [ "$stop_stage" -ge 5 ]; then
  copies_bank_opts=(--train-bank "$net_train_bank" --frames-per-epoch "$(full_data_epoch_frames)")
fi

# Stages 5 and 6 train their networks in one queue, train_jobs at a time (the baseline is member 1).
if run_stage 5; then
  log "Stage 5: baseline '$model_shape' frame classifier on 100% of train (paper Table 1 row 'baseline')"
  queue_stage 5
  queue_job train_baseline python -m asr_kd.bin.train --exp-dir "$nnet_dir/baseline" "${train_opts[@]}" \
    "${full_data_opts[@]}" "${member_mix_opts[@]}" "${copies_bank_opts[@]}" --num-epochs "$num_epochs" \
    --seed "$net_seed"
fi
if run_stage 6; then
  log "Stage 6: the ${num_members}-member ensemble, members differing only in their random seed; member 1 is the baseline"
  queue_stage 6
  # The baseline is trained exactly as a member is: it is the ensemble's first member (one training fewer).
  if [ ! -e "$nnet_dir/member1" ]; then
    mkdir -p "$nnet_dir"
    ln -sfn baseline "$nnet_dir/member1"
  fi
  for m in $(seq 2 "$num_members"); do
    # A member's final.pt means it is complete; a killed one resumes from its checkpoint.pt.
    queue_job "train_member$m" python -m asr_kd.bin.train --exp-dir "$nnet_dir/member$m" "${train_opts[@]}" \
      "${full_data_opts[@]}" "${member_mix_opts[@]}" "${copies_bank_opts[@]}" --num-epochs "$num_epochs" \
      --seed $((100 * net_seed + m))
  done
fi
run_jobs "$train_jobs" "$num_members"

if run_stage 7; then
  if [ "$soft_targets" = stored ]; then
    log "Stage 7: store the ensemble's top-$top_k $teacher_mean-mean posteriors at T=$temperature for every frame of $transfer_bank"
    # shellcheck disable=SC2086
    step soft_targets python -m asr_kd.bin.make_soft_targets --teacher $members --frame-bank "$transfer_bank" \
      --out-dir "$soft_dir" --temperature "$temperature" --top-k "$top_k" \
      --mean "$teacher_mean" --device "$device" --amp "$amp"
  else
    log "Stage 7: soft_targets=$soft_targets: the students run the ensemble online, nothing to store"
  fi
  touch "$exp_dir/.stage7.done"
fi

if run_stage 8; then
  student_epoch_frames=$(full_data_epoch_frames)
  epoch_words="epochs of the baseline's size"
  if [ "$student_epoch" = transfer ]; then
    student_epoch_frames=0  # asr-kd train: the training bank's frames once
    epoch_words="each epoch one pass over it"
  fi
  log "Stage 8: distil the ensemble into one '$model_shape' model (T=$temperature, hard weight $hard_weight) on $transfer_bank, $epoch_words, under the baseline's schedule"
  # Alone, on every core: beside the 3% models on one thread it took 8.2 minutes of the mini demo, against 4.4.
  step train_student python -m asr_kd.bin.train --exp-dir "$nnet_dir/student" "${train_opts[@]}" \
    --train-bank "$transfer_bank" --frames-per-epoch "$student_epoch_frames" \
    "${full_data_opts[@]}" "${student_mix_opts[@]}" --num-epochs "$num_epochs" --seed "$net_seed" "${teacher_opts[@]}" \
    --temperature "$temperature" --hard-weight "$hard_weight"
  touch "$exp_dir/.stage8.done"
fi

# Stage 9's three networks side by side, train_jobs at a time.
if run_stage 9; then
  log "Stage 9: $subset_fraction of train (paper Table 5): hard labels with early stopping; soft targets of the full-data baseline (and of the ensemble) without"
  queue_stage 9
  # One learning-rate schedule for all three, blind to dev; only the hard-label model stops early. They train
  # 40-80 epochs and nothing reads their epoch-N.pt (14.7 MB each at 3x512): the last five are kept. Their seed is
  # no teacher's (the baseline's is net_seed, the members' 100*net_seed+m): from its teacher's initial weights a 3%
  # student gained 1.7-6.2 test points it did not learn (egs/synth/RESULTS.md, "Table 5 and the initialisation").
  subset_schedule_opts=(--num-epochs "$subset_num_epochs" --batch-size "${subset_batch_size:-$batch_size}"
    --seed $((100 * net_seed + 50)) --lr-schedule "$subset_lr_schedule" --keep-last-epochs 5)
  subset_opts=(--train-bank "$bank_dir/train" --subset-fraction "$subset_fraction" --subset-seed "$subset_seed"
    "${subset_schedule_opts[@]}")
  soft_subset_opts=("${subset_opts[@]}")
  if [ -n "$subset_copies" ]; then
    # Copies of exactly the subset's utterances (this experiment's own directory: seeds share bank/), the
    # speed copies aligned by tri2; one bank of the subset and its copies, normalised as bank/train.
    copies_dir=$exp_dir/subset_copies
    step augment_subset python -m asr_kd.bin.augment_data --cuts "$ali_dir/cuts_$train_set.jsonl.gz" \
      --subset-of "$bank_dir/train" --subset-fraction "$subset_fraction" --subset-seed "$subset_seed" \
      --out-dir "$copies_dir/data" --name subset --perturbations ${subset_copies//,/ } --gmm-dir "$gmm_dir/tri2" \
      --lang-dir "$lang_dir" --seed "$seed" --num-workers "$num_workers"
    step bank_subset_copies python -m asr_kd.bin.build_frame_bank --cuts "$copies_dir/data/cuts_subset.jsonl.gz" \
      --out-dir "$copies_dir/bank" --cmvn "$bank_dir/cmvn.json"
    soft_subset_opts=(--train-bank "$copies_dir/bank" "${subset_schedule_opts[@]}")
  fi
  # The longest first (four teachers run online), so that the other two share the other core.
  # shellcheck disable=SC2086
  queue_job train_student_subset_ensemble python -m asr_kd.bin.train --exp-dir "$nnet_dir/student_subset_ensemble" \
    "${train_opts[@]}" "${soft_subset_opts[@]}" --teacher-checkpoints $members --teacher-mean "$teacher_mean" \
    --temperature "$temperature" --hard-weight "${subset_hard_weight:-$hard_weight}" --augment "$subset_augment" \
    --dev-every "$subset_dev_every"
  queue_job train_baseline_subset python -m asr_kd.bin.train --exp-dir "$nnet_dir/baseline_subset" "${train_opts[@]}" \
    "${subset_opts[@]}" --early-stopping-patience "$early_stopping_patience"
  queue_job train_student_subset python -m asr_kd.bin.train --exp-dir "$nnet_dir/student_subset" "${train_opts[@]}" \
    "${soft_subset_opts[@]}" --teacher-checkpoints "$nnet_dir/baseline/final.pt" --temperature "$temperature" \
    --hard-weight "${subset_hard_weight:-$hard_weight}" --augment "$subset_augment" --dev-every "$subset_dev_every"
fi
run_jobs "$train_jobs" "$num_members"

if run_stage 10; then
  log "Stage 10: frame accuracies on every frame bank and hybrid decoding (posterior / prior through tri2's HCLG) of $dev_parts and $test_parts"
  # The first test part (named "test" in the outputs) as aligned, then the other test and dev parts, every
  # utterance of them (some may not have aligned): their frame accuracy comes from their banks below.
  test_cuts=("$ali_dir/cuts_$test_part.jsonl.gz")
  for p in $more_parts; do test_cuts+=("$exp_dir/data/fbank/cuts_$p.jsonl.gz"); done
  # The other parts that have frame banks (those that aligned, stage 4).
  more_banks=""
  for p in $more_parts; do [ -f "$bank_dir/$p/manifest.json" ] && more_banks+=" $p"; done
  # shellcheck disable=SC2206
  decode_opts=(--graph-dir "$graph_dir" --transition-model "$gmm_dir/tri2/final.mdl" --cmvn "$cmvn"
    --dev-cuts "$ali_dir/cuts_$dev_part.jsonl.gz" --test-cuts "${test_cuts[@]}"
    --lm-weights ${lm_weights//,/ } --extend-lm-weights "$lm_weight_extend" --word-ins-penalties ${word_ins_penalties//,/ }
    --extend-word-ins-penalties "$word_ins_penalty_extend" --beam "$decode_beam" --max-active "$decode_max_active" --decoder "$decoder"
    --num-workers "$num_workers")
  for system in baseline student ensemble; do
    if [ $system = ensemble ]; then models=$members; else models=$nnet_dir/$system/final.pt; fi
    # shellcheck disable=SC2086
    step "decode_$system" python -m asr_kd.bin.decode_nnet --model $models "${decode_opts[@]}" \
      --out-dir "$exp_dir/decode/$system" --device "$device"
  done
  for system in baseline student ensemble baseline_subset student_subset student_subset_ensemble; do
    if [ $system = ensemble ]; then models=$members; else models=$nnet_dir/$system/final.pt; fi
    names="train dev test $more_banks"
    case $system in
      *_subset)
        # Their train accuracy is on the utterances they were trained on (paper Table 5).
        # shellcheck disable=SC2086
        step "acc_${system}_train" python -m asr_kd.bin.frame_accuracy --model $models --frame-bank "$bank_dir/train" \
          --subset-fraction "$subset_fraction" --subset-seed "$subset_seed" \
          --output "$results_dir/acc_${system}_train.json" --device "$device" --amp "$amp"
        names="dev test $more_banks" ;;
    esac
    # shellcheck disable=SC2086
    step "acc_$system" python -m asr_kd.bin.frame_accuracy --model $models \
      --frame-bank $(for n in $names; do echo "$bank_dir/$n"; done) \
      --output $(for n in $names; do echo "$results_dir/acc_${system}_$n.json"; done) --device "$device" --amp "$amp"
  done
  touch "$exp_dir/.stage10.done"
fi

if run_stage 11; then
  log "Stage 11: $exp_dir/RESULTS.md: paper Table 1 / Table 5 forms beside the paper's numbers, plots"
  step report python -m asr_kd.bin.report --exp-dir "$exp_dir" --num-members "$num_members"
  touch "$exp_dir/.stage11.done"
fi

if [ -f "$exp_dir/RESULTS.md" ] && [ "$stop_stage" -ge 11 ]; then
  sed -n '/^## Table 1/,/^## Plots/p' "$exp_dir/RESULTS.md" | sed '$d'
fi

log "Finished stages $stage..$stop_stage in $exp_dir"
