"""Questions and entailment hypotheses from the scene graph, with answers balanced per family.

:func:`avqa_questions` asks the MUSIC-AVQA families (audio counting and comparative, visual counting and location,
audio-visual existential, counting, location, comparative and temporal) with ``question_content`` holding
``<Object>`` placeholders filled from ``templ_values`` in order, as the benchmark writes them.
:func:`balance` keeps, per family, the same number of questions for every answer (:func:`answer_key`), so that a
model that reads only the question stays at chance. :func:`entailment_hypotheses` writes claims about one frame under a
three-valued reading: *entailment* when the objects seen make the claim true, *contradiction* when no object
that could be in the frame makes it true, *neutral* when it cannot be verified (it could hold for an object
covered by the wall or by another object).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from xmodal.data.synth import vocabulary
from xmodal.data.synth.scene_language import SEEN
from xmodal.data.synth.scene_render import visible_fractions_at
from xmodal.data.synth.scenes import Scene, SceneObject, box_at, state_at

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six")
MARGIN = 0.1  # left/right answers need the object's centre this fraction of the width away from the middle


def _intersect(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            if min(e1, e2) > max(s1, s2):
                out.append([max(s1, s2), min(e1, e2)])
    return sorted(out)


def _side(scene: Scene, obj: SceneObject, t: float) -> str | None:
    box = box_at(obj, t, scene.config)
    if box is None:
        return None
    offset = (box[0] + box[2]) / 2 / scene.config.width - 0.5
    return None if abs(offset) < MARGIN else ("left" if offset < 0 else "right")


def _q(family: tuple[str, str], content: str, values: list[str], answer: str) -> dict[str, Any]:
    return {"type": list(family), "question_content": content, "templ_values": values, "anser": answer}


def avqa_questions(scene: Scene, rng: np.random.Generator, loudness: dict[int, float] | None = None) -> list[dict]:
    """Every question of the families this scene can answer exactly. ``loudness`` (dB RMS of each object's stem
    over its sounding samples) enables the audio comparative family."""
    objs = [o for o in scene.objects if o.kind != "prop"]
    visible = [o for o in objs if o.visible]
    heard = [o for o in objs if o.sounding]
    by_cls: dict[str, list[SceneObject]] = defaultdict(list)
    for o in objs:
        by_cls[o.cls].append(o)
    out = [_q(("Audio", "Counting"), "How many sound sources can be heard in the video?", [],
              NUMBERS[len(heard)])]
    present = sorted({o.cls for o in visible})
    absent = [c for c in scene.config.classes if c not in by_cls]
    for cls in present + ([str(rng.choice(absent))] if absent else []):
        out.append(_q(("Visual", "Counting"), "How many <Object>s are in the entire video?", [cls],
                      NUMBERS[sum(o.cls == cls for o in visible)]))
    for cls in present:
        group = [o for o in visible if o.cls == cls]
        if len(group) == 1 and (side := _side(scene, group[0], group[0].visible[0][0])):
            out.append(_q(("Visual", "Location"), "Is the <Object> on the left or the right when it first "
                          "appears?", [cls], side))
        both = any(_intersect(o.sounding, o.visible) for o in group)
        out.append(_q(("Audio-Visual", "Existential"), "Is the <Object> in the video making sound?", [cls],
                      "yes" if both else "no"))
    av = [o for o in visible if _intersect(o.sounding, o.visible)]
    out.append(_q(("Audio-Visual", "Counting"), "How many objects in the video make a sound while on screen?", [],
                  NUMBERS[len(av)]))
    starts = sorted((_intersect(o.sounding, o.visible)[0][0], o.id) for o in av)
    if starts and (len(starts) == 1 or starts[1][0] - starts[0][0] >= 1.0):
        first = scene.objects[starts[0][1]]
        if side := _side(scene, first, starts[0][0]):
            out.append(_q(("Audio-Visual", "Location"), "Where is the first object that sounds on screen, on the "
                          "left or the right?", [], side))
    singles = [o for o in heard if len(by_cls[o.cls]) == 1]
    for i, a in enumerate(singles):
        for b in singles[i + 1:]:
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            onset = first.sounding[0][0] - second.sounding[0][0]
            if abs(onset) >= 1.0:
                out.append(_q(("Audio-Visual", "Temporal"), "Which sounds first, the <Object> or the <Object>?",
                              [first.cls, second.cls], first.cls if onset < 0 else second.cls))
            if first.visible and second.visible:
                longer = sum(e - s for s, e in first.sounding) - sum(e - s for s, e in second.sounding)
                if abs(longer) >= 1.0:
                    out.append(_q(("Audio-Visual", "Comparative"), "Does the <Object> sound longer than the "
                                  "<Object>?", [first.cls, second.cls], "yes" if longer > 0 else "no"))
            if loudness is not None:
                louder = loudness[first.id] - loudness[second.id]
                if abs(louder) >= 3.0:
                    out.append(_q(("Audio", "Comparative"), "Is the <Object> louder than the <Object>?",
                                  [first.cls, second.cls], "yes" if louder > 0 else "no"))
    return out


def fill(question: dict[str, Any]) -> str:
    """The question text with its ``<Object>`` placeholders replaced by ``templ_values`` in order."""
    text = question["question_content"]
    for v in question["templ_values"]:
        text = text.replace("<Object>", v, 1)
    return text


def answer_key(question: dict[str, Any]) -> Any:
    """What :func:`balance` equalises within a MUSIC-AVQA family: the answer, except where the question names
    its candidates (temporal: which of the two named instruments sounds first), where it is the answer's
    position among them. A blind model's best guess there is one half either way, and balancing positions
    keeps every instrument's questions, where balancing the eight class names kept only the rarest's count."""
    if question["type"][1] == "Temporal":
        return ("candidate", question["templ_values"].index(question["anser"]))
    return question["anser"]


def balance(items: list, family_key, answer_key, rng: np.random.Generator, floor: float = 0.25,
            min_answers: int = 2, rescue: bool = False) -> list:
    """Per family, drop answers rarer than ``floor`` times the commonest, then keep the same number of items
    for each remaining answer (chosen at random); the order of the input is kept. A family left with fewer
    than ``min_answers`` answers is dropped (a blind model would solve it), unless ``rescue``: then it keeps
    its ``min_answers`` commonest answers (a yes/no family whose "no" is rare stays, smaller)."""
    groups: dict[Any, dict[Any, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, it in enumerate(items):
        groups[family_key(it)][answer_key(it)].append(i)
    keep: list[int] = []
    for answers in groups.values():
        top = max(len(v) for v in answers.values())
        kept = [v for v in answers.values() if len(v) >= floor * top]
        if rescue and len(kept) < min_answers:
            kept = sorted(answers.values(), key=len, reverse=True)[:min_answers]
        if len(kept) < min_answers:
            continue
        n = min(len(v) for v in kept)
        for v in kept:
            keep.extend(int(i) for i in rng.choice(v, size=n, replace=False))
    return [items[i] for i in sorted(keep)]


# ---------------------------------------------------------------- entailment

TEMPLATES = ("exists", "count", "relation")


def _claim(template: str, rng: np.random.Generator, classes: tuple[str, ...]) -> tuple[str, Any]:
    cls = str(rng.choice(classes))
    if template == "exists":
        tint = str(rng.choice([t for t in vocabulary.TINTS if t != "plain"]))
        name = f"{tint} {cls}"
        return f"There is {'an' if name[0] in 'aeiou' else 'a'} {name}.", (cls, tint)
    if template == "count":
        k = int(rng.integers(2, 4))
        return f"There are at least {NUMBERS[k]} {vocabulary.get_class(cls).plural_name}.", (cls, k)
    other = str(rng.choice([c for c in classes if c != cls]))
    side = str(rng.choice(["left", "right"]))
    return f"A {cls} is to the {side} of a {other}.", (cls, other, side)


def _holds(template: str, args: Any, objs: list[dict]) -> bool:
    if template == "exists":
        return any(o["cls"] == args[0] and o["tint"] == args[1] for o in objs)
    if template == "count":
        return sum(o["cls"] == args[0] for o in objs) >= args[1]
    cls, other, side = args
    for a in (o for o in objs if o["cls"] == cls):
        for b in (o for o in objs if o["cls"] == other):
            if (a["box"][2] <= b["box"][0]) if side == "left" else (a["box"][0] >= b["box"][2]):
                return True
    return False


def label(scene: Scene, t: float, template: str, args: Any) -> str:
    """entailment / neutral / contradiction of a claim about the frame at ``t`` (see the module docstring)."""
    frac = visible_fractions_at(scene, t)
    rows: list[dict[str, Any]] = []
    for o in scene.objects:
        box, state = box_at(o, t, scene.config), state_at(o, t, scene.config)
        if box is not None and state is not None:  # both or neither: the box is the state's
            rows.append({"cls": o.cls, "tint": state[3], "box": box, "frac": frac[o.id]})
    if _holds(template, args, [r for r in rows if r["frac"] >= SEEN]):
        return "entailment"
    if scene.occluders or _holds(template, args, [r for r in rows if r["frac"] > 0]):
        return "neutral"
    return "contradiction"


def entailment_hypotheses(scene: Scene, t: float, rng: np.random.Generator, tries: int = 40) -> list[dict]:
    """For each template, up to one hypothesis per label about the frame at ``t``:
    ``{"template", "hypothesis", "label"}``."""
    classes = tuple(sorted({o.cls for o in scene.objects} | set(scene.config.classes)))
    seen_classes = tuple(sorted({o.cls for o in scene.objects if box_at(o, t, scene.config) is not None}))
    out: list[dict[str, str]] = []
    for template in TEMPLATES:
        found: dict[str, str] = {}
        for k in range(tries):
            pool = seen_classes if (k % 2 == 0 and len(seen_classes) >= 2) else classes
            text, args = _claim(template, rng, pool)
            lab = label(scene, t, template, args)
            found.setdefault(lab, text)
            if len(found) == 3:
                break
        out.extend({"template": template, "hypothesis": h, "label": lab} for lab, h in sorted(found.items()))
    return out
