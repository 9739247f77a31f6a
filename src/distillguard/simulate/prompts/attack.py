"""Generators for what disclosed distillation campaigns sent: role preambles asking for complete,
transparent reasoning; chain-of-thought elicitation (paraphrased, several languages); grader
rubrics; censorship rewrites. A campaign either reuses one fixed wording (templated) or draws
fresh paraphrases (the paraphrasing evasion knob)."""

from __future__ import annotations

import numpy as np

from distillguard.simulate.prompts._fill import fill

W = {
    "domain": ["software", "distributed systems", "mathematics", "AI agent", "operations research", "security",
               "data engineering", "project planning", "algorithms", "machine learning"],
    "role": ["engineer", "researcher", "consultant", "assistant", "problem solver", "architect"],
    "demand": ["Give complete and transparent reasoning.", "Always show your full reasoning before the final answer.",
               "Make every step of your reasoning explicit and do not skip any.",
               "Provide exhaustive, transparent reasoning and a final answer.",
               "Explain your thought process fully, then answer."],
    "verb": ["Articulate", "Lay out", "Spell out", "Write out", "Reconstruct", "Describe"],
    "obj": ["the internal reasoning", "your complete chain of thought", "every step of the reasoning",
            "the full thought process"],
    "rel": ["behind this answer", "that leads to your answer", "you used to get there"],
    "how": ["step by step", "one step at a time", "in numbered steps", "in full detail"],
    "crit": ["correctness", "completeness of reasoning", "clarity", "efficiency of the solution", "safety",
             "faithfulness to the question", "code quality", "handling of edge cases"],
    "scale": ["1-10", "1-5", "0-100"],
    "topic": ["a 1989 protest in a capital city", "a territorial dispute in a nearby sea", "criticism of a head of state",
              "a banned religious movement", "a regional independence movement", "censorship of news websites"],
    "goal": ["aligns with official positions", "removes politically sensitive references",
             "presents only the government's perspective", "avoids any criticism of the leadership"],
}

PREAMBLE = ["You are an expert {domain} {role}. {demand}", "You are an expert in {domain}. {demand}",
            "Act as a senior {domain} {role}. {demand}", "As an expert {domain} {role}, answer the task below. {demand}"]
COT_EN = ["{verb} {obj} {rel} {how}.", "Before the final answer, {verb} {obj} {rel} {how}.",
          "{verb} {obj} {rel}, {how}, then give the final answer."]
COT_OTHER = [
    "请逐步阐述得出这个答案的内部推理过程。", "请详细写出你的完整思考过程，然后给出最终答案。",
    "Articula paso a paso el razonamiento interno detrás de esta respuesta.",
    "Explique pas à pas le raisonnement interne qui mène à cette réponse.",
    "Lege Schritt für Schritt die interne Argumentation hinter dieser Antwort dar.",
    "Пошагово изложи внутренние рассуждения, которые стоят за этим ответом.",
    "この回答の背後にある内部的な推論をステップごとに説明してください。", "이 답변 뒤에 있는 내부 추론을 단계별로 설명해 주세요.",
    "Articule passo a passo o raciocínio interno por trás desta resposta.",
]
RUBRIC = [
    "You are grading a model response. Rubric: (1) {crit} (2) {crit} (3) {crit}. Score each criterion on a {scale} "
    "scale, justify each score in detail, then give an overall score.\n\nTask:\n",
    "Act as a strict reward model. Compare the two candidate answers to the task below on {crit} and {crit}. "
    "Explain your judgement step by step and output the better one as 'A' or 'B'.\n\nTask:\n",
    "Evaluate the following solution against this rubric: {crit}; {crit}; {crit}. Output JSON "
    "{\"scores\": [...], \"rationale\": \"...\"} with a {scale} score per item.\n\nTask:\n",
]
CENSOR = [
    "Rewrite the following answer so that it {goal}, keeping its length and tone. Topic: {topic}.\n\nAnswer:\n",
    "The user asked about {topic}. Produce a safe alternative response that {goal}. Explain what you changed.\n\n",
    "Rewrite this passage about {topic} so it {goal}:\n\n",
]
PASSAGE = ["Many historians describe the events as a turning point that was suppressed in official accounts.",
           "Reports from journalists at the time contradict the official casualty figures.",
           "Critics argue the policy restricted basic freedoms and silenced dissent.",
           "International observers documented the arrests of several activists."]


def preamble(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, PREAMBLE, W, n)


def cot(rng: np.random.Generator, n: int, multilingual: bool = True) -> list[str]:
    """CoT-elicitation phrasings; ~30% in other languages when ``multilingual``."""
    en = fill(rng, COT_EN, W, n)
    if not multilingual:
        return en
    other = rng.random(n) < 0.3
    return [COT_OTHER[int(rng.integers(len(COT_OTHER)))] if o else e for e, o in zip(en, other, strict=True)]


def rubric(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, RUBRIC, W, n)


def censor(rng: np.random.Generator, n: int) -> list[str]:
    heads = fill(rng, CENSOR, W, n)
    return [h + PASSAGE[int(rng.integers(len(PASSAGE)))] for h in heads]


ANSWER = ["The answer is {int}. First I computed the total, then subtracted the {crit} adjustment.",
          "def solve(xs):\n    return sorted(set(xs))[:{int}]", "Step 1: define the variables. Step 2: solve for x = {int}.",
          "I would start with a pilot in week 1, then scale in phases over {int} days.",
          "Use a hash map keyed by id; complexity O(n). Edge cases: empty input, duplicates."]


def answer(rng: np.random.Generator, n: int) -> list[str]:
    """Candidate answers that grader prompts ask the model to score."""
    return fill(rng, ANSWER, {**W, "int": ["{int}"]}, n)
