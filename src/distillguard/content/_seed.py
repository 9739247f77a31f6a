"""Seed data the content models are trained on: written for this project, by hand, as small
grammars (stems x slots) that expand deterministically.

Nothing here is copied from the development corpora (``../shared/corpora``, used only to measure)
or from the traffic simulator's generators (that would flatter the detector on simulated traffic).
The held-out CoT paraphrases used to *measure* recall live in ``_heldout.py`` and are never read here.
"""

from __future__ import annotations

import itertools
import random

__all__ = ["capability_examples", "cot_examples"]

_LANGS = ["Python", "JavaScript", "TypeScript", "Java", "C++", "C#", "Go", "Rust", "Ruby", "PHP", "Kotlin",
          "Swift", "Scala", "Bash", "SQL", "R", "Lua", "Perl", "Haskell", "C"]
_CODE_TASKS = ["reverses a linked list", "checks whether a string is a palindrome", "parses a CSV file into records",
               "returns the n-th Fibonacci number", "merges two sorted arrays", "finds duplicate elements in a list",
               "counts word frequencies in a text", "validates an email address with a regex",
               "implements binary search", "computes the longest common prefix of strings",
               "serialises a tree to JSON", "removes vowels from a string", "flattens a nested list",
               "rotates a matrix by 90 degrees", "implements an LRU cache", "sorts a dictionary by value",
               "converts a Roman numeral to an integer", "checks if a number is prime",
               "returns the sum of digits of an integer", "detects a cycle in a directed graph",
               "implements a thread-safe queue", "reads a file line by line and prints the longest line",
               "finds the maximum subarray sum", "computes the GCD of two integers"]
_CODE_STEMS = ["Write a {lang} function that {task}.", "Implement a {lang} program that {task}.",
               "Create a {lang} class that {task}.", "How would you write code in {lang} that {task}?",
               "Can you give me {lang} code which {task}?", "Write a function that {task}. Use {lang}.",
               "Fix the bug in this {lang} function that {task}:", "Refactor the following {lang} code that {task} "
               "to be more readable:", "Write unit tests in {lang} for a function that {task}.",
               "Optimize my {lang} implementation that {task}; it is too slow.",
               "Explain what this {lang} snippet does and find the error:", "Translate this Python code to {lang}:",
               "Write a function to {task2}. Your code should pass these tests:"]
_CODE_SNIPPETS = [
    "def {f}(xs):\n    result = []\n    for x in xs:\n        if x not in result:\n            result.append(x)\n    return result",
    "function {f}(arr) {{\n  return arr.filter((x, i) => arr.indexOf(x) === i);\n}}",
    "public static int {f}(int[] nums) {{\n    int best = 0;\n    for (int n : nums) best = Math.max(best, n);\n    return best;\n}}",
    "#include <vector>\nint {f}(const std::vector<int>& v) {{\n    int s = 0;\n    for (auto x : v) s += x;\n    return s;\n}}",
    "func {f}(s string) bool {{\n\tfor i := 0; i < len(s)/2; i++ {{\n\t\tif s[i] != s[len(s)-1-i] {{ return false }}\n\t}}\n\treturn true\n}}",
    "fn {f}(v: &Vec<i32>) -> i32 {{\n    v.iter().sum()\n}}",
    "SELECT name, COUNT(*) FROM orders o JOIN users u ON o.user_id = u.id GROUP BY name HAVING COUNT(*) > 3;",
    "import pandas as pd\ndf = pd.read_csv('data.csv')\nprint(df.groupby('{f}').mean())",
    "class {F}:\n    def __init__(self, size):\n        self.size = size\n        self.items = {{}}\n\n    def get(self, key):\n        return self.items.get(key)",
    "assert {f}([1, 2, 3]) == 6\nassert {f}([]) == 0\nassert {f}([5]) == 5",
    "Traceback (most recent call last):\n  File \"main.py\", line 12, in <module>\n    {f}(data)\nTypeError: 'NoneType' object is not iterable",
    "from typing import List\n\n\ndef {f}(numbers: List[int]) -> List[int]:\n    \"\"\" Return the list without duplicates, keeping order.\n    >>> {f}([1, 2, 1])\n    [1, 2]\n    \"\"\"",
    "/**\n * Returns the {f} of the input.\n * @param {{number[]}} xs\n */\nconst {f} = (xs) => {{",
    "#!/bin/bash\nfor f in *.log; do\n  grep -c ERROR \"$f\"\ndone",
    "def {f}(n):\n    \"\"\"Given a positive integer n, return the count of numbers that start or end with 1.\"\"\"",
    "fun {f}(list: List<Int>): Int {{\n    return list.filter {{ it % 2 == 0 }}.sum()\n}}",
    "<?php\nfunction {f}($s) {{\n    return strrev($s);\n}}",
]
_TASK2 = ["find the minimum cost path in a grid", "count the number of rotations needed", "check if the given tuple has all "
          "equal elements", "remove the k-th element from a list", "find the perimeter of a square", "convert snake case to camel case",
          "find the largest negative number in a list", "sum the nth row of a triangle"]

_AGENT = ["You have access to the following tools: {tools}. Use them to {goal}.",
          "Call the {tool} function to {goal}.", "Use the {tool} API to {goal} and report the result.",
          "I need you to {goal}. You can use {tools}.", "Can you {goal} for me?",
          "Please {goal}. Respond with a function call in JSON.", "As an autonomous agent, {goal}. Think about which tool to "
          "call first, call it, observe the result and continue until done.",
          "Find out {osq} in the directory /home/{user}. Use shell commands.",
          "Using the database table {table}, tell me {dbq}.", "There is a log file at /var/log/{table}.log. {osq2}",
          "Run the command to {shell} and tell me the output.", "Navigate to the website and {web}.",
          "Book {book} for me and send the confirmation to my email.", "Get the current {info} in {city}.",
          "Execute a multi-step workflow: first {goal}, then {goal2}, and finally summarise what you did.",
          "Given the function definitions below, pick the right function and arguments to {goal}.\n{{\"name\": \"{tool}\", \"parameters\": {{\"type\": \"object\"}}}}"]
_TOOLS = ["search_web, read_file, write_file", "get_weather, get_time", "python_interpreter, browser", "sql_query, send_email",
          "calendar.create_event, calendar.list_events", "bash, editor", "search_flights, book_flight", "get_stock_price"]
_TOOL1 = ["get_weather", "search_flights", "calculate_loan_payment", "send_email", "create_calendar_event", "get_stock_price",
          "translate_text", "search_recipes", "get_news_headlines", "convert_currency", "book_hotel", "run_sql"]
_GOALS = ["find the cheapest flight from Boston to Denver next Friday", "check the weather in Paris tomorrow",
          "schedule a meeting with the team on Monday at 10am", "look up the latest stock price of a company",
          "convert 500 US dollars to euros", "send an email to my manager with the report attached",
          "find recipes with chicken and rice", "get today's news headlines about technology",
          "calculate my monthly mortgage payment", "create a new repository and push the initial commit",
          "find all files larger than 100MB and delete the temporary ones", "fetch the open issues and label them",
          "order a pizza for delivery", "translate this paragraph into Spanish using the translation tool"]
_OSQ = ["how many files have the extension .txt", "which user owns the most processes", "the total size of all log files",
        "how many lines contain the word error"]
_OSQ2 = ["Count how many times the user admin logged in.", "Tell me how many unique IP addresses appear.",
         "Find the most frequent status code."]
_DBQ = ["which employee has the highest salary", "how many orders were placed in March", "the average score of "
        "players from team B", "what is the name of the school with the most students"]

# What an agent loop sends back to the model: tool / function outputs and observations. They carry no task
# words of their own, so without them a classifier files these turns under whatever class their tokens
# happen to resemble (a heavy agent user then looks like a grader farm).
_TOOL_OUT = ["Tool result ({tname}): {obs}", "Observation: {obs}", "Function {tname} returned: {obs}",
             "<tool_result name=\"{tname}\">{obs}</tool_result>", "[{tname} output]\n{obs}", "Output of {tname}:\n{obs}",
             "{{\"tool\": \"{tname}\", \"status\": \"{status}\", \"result\": \"{obs}\"}}",
             "Result from the {tname} call: {obs}", "tool_call_id call_{num}: {obs}", "$ {cmd}\n{obs}"]
_TOOL_NAMES = ["bash", "python", "search", "web_search", "read_file", "write_file", "http", "sql", "browser",
               "calculator", "get_weather", "git", "kubectl", "grep", "list_dir", "run_tests"]
_TOOL_OBS = ["exit code 0", "exit code 1\nerror: file not found", "3 files changed, 41 insertions(+), 7 deletions(-)",
             "200 OK, 512 bytes, content-type application/json", "404 Not Found", "no matches", "12 results found",
             "tests passed: 48, failed: 2", "ok", "permission denied", "connection timed out after 30s",
             "{{\"temp_c\": 14, \"conditions\": \"cloudy\"}}", "rows returned: 17", "src/ main.py utils.py README.md",
             "Traceback (most recent call last): KeyError: 'id'", "wrote 2048 bytes to out.txt", "pod/web-7f9 Running",
             "commit 3fa2c1e pushed to origin/main", "result = 42", "page title: Return policy - 30 days"]
_TOOL_CMDS = ["ls -la", "pytest -q", "git status", "cat config.yaml", "curl -s localhost:8080/health", "make build"]

_PLAN = ["Create a {n}-week plan to {pgoal}.", "Draft a project roadmap with milestones to {pgoal}.",
         "Help me plan {pgoal} over the next {n} months, with phases, dependencies and risks.",
         "Break down the following long-term goal into milestones and weekly tasks: {pgoal}.",
         "Design a step-by-step migration plan to {pgoal}, including rollback points.",
         "Make a detailed itinerary for a {n}-day trip to {city}.", "Write a study schedule to {pgoal} in {n} weeks.",
         "Outline a strategy and timeline to {pgoal}. Include resources, owners and deadlines.",
         "What are the stages of a plan to {pgoal}? Give a Gantt-style schedule.",
         "Plan the launch of {pgoal2}: workstreams, critical path, contingencies.",
         "I want to {pgoal}. Sequence the work into sprints and identify blockers."]
_PGOALS = ["migrate our monolith to microservices", "learn machine learning from scratch", "run a marathon",
           "launch a small online business", "move a data center to the cloud", "prepare for a software engineering "
           "interview", "renovate a kitchen", "build a mobile app MVP", "reduce team onboarding time", "write a thesis",
           "organise a 300-person conference", "pay off credit card debt"]
_PGOALS2 = ["a new product line", "a mobile banking app", "a community garden", "an internal analytics platform"]

_MATH = ["{a} {item} cost ${b} each. {name} buys {c} of them and pays with a ${d} bill. How much change does {name} get?",
         "{name} reads {a} pages a day. How many days will it take to finish a book of {d} pages?",
         "A train travels {a} km in {b} hours. What is its average speed in km per hour?",
         "If {a} workers build a wall in {b} days, how many days would {c} workers need?",
         "What is the probability of rolling a sum of {a} with two fair dice?",
         "Solve for x: {a}x + {b} = {d}.", "Prove that the square root of {a} is irrational.",
         "Find the derivative of f(x) = {a}x^3 - {b}x + {c}.", "Compute the integral of x^{a} from 0 to {b}.",
         "{name} has {a} apples and gives {b} to a friend, then buys {c} more. How many apples does {name} have now?",
         "A rectangle has a perimeter of {d} cm and a width of {a} cm. What is its area?",
         "not ( {bool1} ) and {bool2} or not {bool1} is", "Today is {date}. What is the date {a} days from now in MM/DD/YYYY?\nOptions:\n(A) 01/05/2021\n(B) 12/30/2020\n(C) 01/02/2021",
         "Sort the following words alphabetically: List: {words}",
         "If you follow these instructions, do you return to the starting point? Take {a} steps. Turn left. Take {b} steps. Turn around. Take {c} steps.\nOptions:\n- Yes\n- No",
         "Which sentence has the correct adjective order:\nOptions:\n(A) big old red car\n(B) red old big car",
         "Q: {name} is taller than Kim, and Kim is taller than Lee. Who is the shortest?\nA: Let's think.",
         "The following paragraphs each describe a set of {a} objects arranged in a fixed order. {name} finished above Joe. Which is true?\nOptions:\n(A) {name} finished first\n(B) Joe finished first",
         "Is the following argument deductively valid? Every {item} is red. Some red things are round. Therefore some {item} are round.\nOptions:\n- valid\n- invalid",
         "How many positive integers less than {d} are divisible by {a} or {b}?",
         "A store discounts a ${d} jacket by {a}%. What is the sale price?"]
_NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Liam", "Sofia", "Raj", "Elena", "Marcus", "Zoe"]
_ITEMS = ["notebooks", "apples", "tickets", "pencils", "cupcakes", "marbles"]

_GRADER = ["You are a grader. Score the following response from 1 to {s} on {crit} and justify the score.",
           "Evaluate the answer below against the rubric: {crit}, {crit2}. Output a score for each criterion.",
           "Which of the two responses is better, A or B? Consider {crit} and {crit2}. Output only the letter.",
           "Rate this essay on a scale of 1-{s} for {crit}. Provide feedback.",
           "Act as a judge model. Compare the candidate output to the reference answer and return a JSON with "
           "a score and a rationale.", "Grade the student's solution: is it correct? Assign partial credit per "
           "the rubric.", "Here is a question, a reference answer and a model answer. Decide whether the model answer "
           "is correct. Reply with CORRECT or INCORRECT.", "Review this pull request and rate its {crit} from 1 to {s}.",
           "Assess the quality of the following summary for {crit} and {crit2}; give a numeric score.",
           "You are a reward model. Assign a reward between 0 and 1 to the assistant's reply for {crit}."]
_CRIT = ["helpfulness", "factual accuracy", "coherence", "harmlessness", "code correctness", "relevance",
         "completeness", "style", "conciseness", "reasoning quality"]

_CENSOR = ["Rewrite the following text so that it {cgoal}.", "Edit this article to {cgoal2} about {ctopic}.",
           "Produce a version of this answer about {ctopic} that {cgoal}.", "Sanitise the passage below: {cgoal2}.",
           "Revise the response about {ctopic} so it is acceptable to the authorities and {cgoal}.",
           "Remove any mention of {ctopic} from this text and rephrase the rest neutrally.",
           "Paraphrase this news report about {ctopic} so that it {cgoal}.",
           "Make this answer about {ctopic} politically safe: {cgoal2}."]
_CGOAL = ["follows the official government line", "contains no politically sensitive content", "omits criticism of the ruling party",
          "presents the state's narrative only", "would pass a state censor", "downplays the protests"]
_CGOAL2 = ["delete the sensitive parts", "soften the criticism of the leadership", "replace references to the crackdown",
           "remove dissident viewpoints"]
_CTOPIC = ["the student protests", "the disputed islands", "the detention camps", "the banned movement", "the election fraud allegations",
           "the opposition leader", "press freedom"]

_CHAT = ["What's a good name for a {pet}?", "How do I get better at {hobby}?", "I feel {mood} today, any advice?",
         "Tell me a joke about {thing}.", "What do you think about {thing}?", "Can you recommend a book about {hobby}?",
         "I want you to act as a {persona}. I will tell you my problems and you reply as the {persona} would.",
         "Pretend you are a {persona} and describe your day.", "Imagine you are a {persona}. How would you greet a visitor?",
         "Write a short poem about {thing}.", "Write a story about a {pet} who loves {hobby}.",
         "What is the capital of {city2}?", "Who was the first person to climb Everest?", "how do i {harm}",
         "what's the best way to {harm}?", "Why is the sky blue?", "Give me tips for a first date.",
         "hi, how are you?", "thanks, that helps!", "can you tell me more?", "ok what else", "That's not what I meant.",
         "Describe the taste of {food} to someone who has never had it.", "What should I cook for dinner with {food}?",
         "Roleplay as a {persona} who has just discovered {thing}.", "Summarise the plot of a famous novel about {thing}.",
         "Is it rude to {etiq}?", "What are some fun things to do in {city}?", "My friend is upset with me. What should I say?"]
_PET = ["dog", "cat", "parrot", "hamster"]
_HOBBY = ["painting", "chess", "guitar", "running", "photography", "gardening"]
_MOOD = ["sad", "anxious", "bored", "lonely", "stressed"]
_THING = ["the ocean", "autumn", "coffee", "robots", "friendship", "time travel", "the moon"]
_PERSONA = ["pirate", "medieval knight", "travel guide", "therapist", "stand-up comedian", "detective", "wizard",
            "motivational coach", "Shakespearean actor", "space explorer"]
_HARM = ["get back at my neighbour", "pick a lock", "cheat on a test", "insult someone without them noticing",
         "sneak alcohol into a concert", "find out where someone lives"]
_FOOD = ["mango", "kimchi", "blue cheese", "durian"]
_ETIQ = ["leave a party without saying goodbye", "text during dinner", "ask a coworker their salary"]
_CITY = ["Tokyo", "Lisbon", "Chicago", "Nairobi", "Berlin", "Lima"]

_OTHER = ["Translate the following sentence into {lang2}: {sent}", "Summarise this paragraph in one sentence: {sent}",
          "Correct the grammar: {sent}", "Classify the sentiment of this review: {sent}", "Extract all the dates from: {sent}",
          "Convert this text to title case: {sent}", "Give three synonyms for the word '{word}'.",
          "Define '{word}'.", "Paraphrase: {sent}", "Detect the language of: {sent}"]
# Everyday production work (support desks, content pipelines, data clean-up): rewriting, scoring and
# summarising, but of customers' text, not of model answers, and with no political brief. Without these
# the only classes that mention "rewrite", "score" or "reply" are the grader and censorship ones.
_BIZ = ["Write a short, polite response to this {who} message: {msg}", "Reply to the {who} below in a warm tone and "
        "offer next steps.\n\n{msg}", "Condense this {doc} into {k} bullet points for the team:\n{msg}",
        "Give a one-line summary of this {doc}: {msg}", "Label this {who} message as billing, technical, account or "
        "other: {msg}", "Rate the sentiment of this {who} feedback from 1 (angry) to 5 (delighted): {msg}",
        "Is the following {who} message urgent? Answer yes or no. {msg}", "Pull the order number and the product out of "
        "this message as JSON: {msg}", "Turn this note into a professional e-mail to a {who}: {msg}",
        "Make this {doc} friendlier and shorter: {msg}", "Proofread the following {doc} and return the corrected text: {msg}",
        "Translate this {who} message into {lang2} for our support agents: {msg}", "Tag this {doc} with up to three topics: "
        "{msg}", "Score this lead from 0 to 100 on how likely they are to buy, based on their message: {msg}",
        "Spam or not spam? {msg}", "Suggest a subject line for this e-mail: {msg}", "Write alt text for a product photo "
        "described as: {msg}", "Normalise this address into street, city and postcode fields: {msg}",
        "Classify the intent of this chat message (cancel, upgrade, question, complaint): {msg}",
        "Summarise this meeting transcript and list the action items: {msg}"]
_BIZ_WHO = ["customer", "client", "user", "guest", "patient", "supplier", "tenant"]
_BIZ_DOC = ["ticket", "review", "e-mail", "product description", "newsletter", "meeting note", "chat log", "memo"]
_BIZ_MSG = ["my parcel arrived damaged and I want a replacement", "I cannot log in since the last update",
            "you billed me twice this month", "when will the blue model be back in stock?", "great service, thanks Ana!",
            "the heating in flat 4 is broken again", "please cancel my subscription", "order 5531: wrong size delivered",
            "can we move Tuesday's call to 3pm?", "the invoice total does not match the quote",
            "Q3 numbers are up 4%, hiring freeze continues, offsite moved to May", "FREE gift card!!! claim now"]

_SENT = ["the meeting was moved to Thursday because the client was late", "I absolutely loved the service, will come again",
         "she dont like going their on weekends", "The product broke after two days.", "We signed the contract on 3 May 2021."]
_WORDS = ["ephemeral", "robust", "serendipity", "pragmatic"]


def _expand(stems: list[str], slots: dict[str, list[str]], n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        stem = rng.choice(stems)
        vals = {k: rng.choice(v) for k, v in slots.items()}
        out.append(stem.format(**vals))
    return out


def capability_examples(n_per_class: int = 400, seed: int = 7) -> tuple[list[str], list[str]]:
    """(texts, labels) for the capability classifier; deterministic for a seed."""
    rng = random.Random(seed)
    num = [str(i) for i in (2, 3, 4, 5, 7, 8, 12, 15, 18, 24, 30, 45, 60, 100, 120, 250)]
    texts: list[str] = []
    labels: list[str] = []

    def add(label: str, xs: list[str]) -> None:
        texts.extend(xs)
        labels.extend([label] * len(xs))

    fnames = ["solve", "count_items", "max_sum", "is_valid", "merge", "parse_line", "unique", "helper"]
    code = _expand(_CODE_STEMS, {"lang": _LANGS, "task": _CODE_TASKS, "task2": _TASK2}, n_per_class, rng)
    code = [c + ("\n\n" + rng.choice(_CODE_SNIPPETS).format(f=rng.choice(fnames), F="Cache") if rng.random() < 0.5 else "")
            for c in code]
    code += [rng.choice(_CODE_SNIPPETS).format(f=rng.choice(fnames), F="Cache") for _ in range(n_per_class // 2)]
    add("coding", code)
    add("agentic", _expand(_AGENT, {"tools": _TOOLS, "tool": _TOOL1, "goal": _GOALS, "goal2": _GOALS, "osq": _OSQ,
                                    "osq2": _OSQ2, "dbq": _DBQ, "table": ["employees", "orders", "players", "auth", "sales"],
                                    "user": ["alice", "bob", "ubuntu"], "shell": ["list running processes", "check disk usage",
                                    "compress the logs folder"], "web": ["find the return policy", "add the cheapest headphones to the cart"],
                                    "book": ["a table for two at 7pm", "a hotel room in Rome"], "info": ["weather", "time", "exchange rate"],
                                    "city": _CITY}, n_per_class, rng))
    add("agentic", _expand(_TOOL_OUT, {"tname": _TOOL_NAMES, "obs": _TOOL_OBS, "status": ["ok", "error"], "num": num,
                                       "cmd": _TOOL_CMDS}, n_per_class // 2, rng))
    add("planning", _expand(_PLAN, {"n": num, "pgoal": _PGOALS, "pgoal2": _PGOALS2, "city": _CITY}, n_per_class, rng))
    add("math_reasoning", _expand(_MATH, {"a": num, "b": num, "c": num, "d": num, "name": _NAMES, "item": _ITEMS,
                                          "bool1": ["True", "False"], "bool2": ["True", "False"],
                                          "date": ["12/31/2020", "03/01/2019"], "words": ["zebra apple mango kiwi",
                                          "oak birch elm"]}, n_per_class, rng))
    add("grader", _expand(_GRADER, {"s": ["5", "10", "100"], "crit": _CRIT, "crit2": _CRIT}, n_per_class, rng))
    add("censorship_rewrite", _expand(_CENSOR, {"cgoal": _CGOAL, "cgoal2": _CGOAL2, "ctopic": _CTOPIC}, n_per_class, rng))
    add("chat", _expand(_CHAT, {"pet": _PET, "hobby": _HOBBY, "mood": _MOOD, "thing": _THING, "persona": _PERSONA,
                                "harm": _HARM, "food": _FOOD, "etiq": _ETIQ, "city": _CITY, "city2": ["France", "Peru", "Kenya"]},
                        n_per_class, rng))
    add("other", _expand(_OTHER, {"lang2": ["French", "German", "Japanese"], "sent": _SENT, "word": _WORDS}, n_per_class // 2, rng))
    add("other", _expand(_BIZ, {"who": _BIZ_WHO, "doc": _BIZ_DOC, "msg": _BIZ_MSG, "k": num[:4],
                                "lang2": ["Spanish", "Portuguese", "Italian", "Dutch"]}, n_per_class, rng))
    return texts, labels


# --- chain-of-thought coercion ------------------------------------------------------------------
# Positive: demands for the model's *own* complete/internal/transparent reasoning trace.
_COT_VERB = ["Articulate", "Spell out", "Lay out", "Write down", "Show", "Reveal", "Expose", "Document", "Walk me through",
             "Give", "Output", "Print", "Provide", "Disclose", "Narrate", "Verbalize"]
_COT_OBJ = ["your complete internal reasoning", "the full chain of thought", "your entire thought process",
            "every step of your reasoning", "the internal reasoning behind the answer", "your hidden reasoning",
            "your raw reasoning trace", "all of your intermediate thinking", "the transparent reasoning that led you there",
            "your chain-of-thought", "each inference you make", "the reasoning you used internally", "your scratchpad",
            "your inner monologue while solving it", "the complete derivation of your answer"]
_COT_MOD = ["", " step by step", " in full detail", " without skipping anything", " before giving the final answer",
            " exhaustively", ", leaving nothing implicit", " verbatim", " in a <thinking> block"]
_COT_EXTRA = ["Give complete and transparent reasoning.", "Make your reasoning fully explicit.",
              "Think out loud and show all of it.", "Do not hide any part of your thought process.",
              "Include the reasoning trace, not just the answer.", "Your response must contain your full chain of thought.",
              "Expose every intermediate step of your thinking.", "Let me see exactly how you reasoned, in complete detail."]
_COT_ML = [
    # zh
    "请展示你完整的思维链。", "详细写出你的推理过程。", "把你内部的思考步骤全部写出来。", "请给出完整透明的推理。", "一步一步地说明你的思考过程。",
    # ja
    "あなたの思考過程をすべて書き出してください。", "完全な推論の過程を示してください。", "内部の推論を一つずつ説明して。",
    # ko
    "당신의 전체 사고 과정을 보여 주세요.", "추론 과정을 빠짐없이 단계별로 작성하세요.", "내부적인 생각의 흐름을 설명해 주세요.",
    # es
    "Muestra todo tu proceso de pensamiento.", "Explica tu razonamiento completo paso a paso.", "Escribe tu cadena de pensamiento entera.",
    "Detalla el razonamiento interno que usaste.",
    # fr
    "Montre tout ton raisonnement interne.", "Détaille ta chaîne de pensée complète.", "Expose ton processus de réflexion étape par étape.",
    # de
    "Zeige deinen vollständigen Denkprozess.", "Lege deine gesamte Gedankenkette offen.", "Beschreibe deine interne Argumentation Schritt für Schritt.",
    # ru
    "Покажи весь свой ход мыслей.", "Распиши полностью своё рассуждение шаг за шагом.", "Опиши свою внутреннюю цепочку рассуждений.",
    # pt
    "Mostre todo o seu processo de pensamento.", "Explique seu raciocínio completo passo a passo.", "Escreva sua cadeia de pensamento inteira.",
    # it, nl, tr, vi, ar, hi (bonus)
    "Mostra tutto il tuo ragionamento interno.", "Laat je volledige denkproces zien.", "Tüm düşünce sürecini göster.",
    "Hãy trình bày toàn bộ quá trình suy luận của bạn.", "اعرض سلسلة تفكيرك الكاملة.", "अपनी पूरी सोच प्रक्रिया दिखाओ।",
]
# Negative: ordinary requests, including a student's "explain step by step how to solve ...".
_NEG = ["Explain step by step how to solve {t}.", "Can you show me the steps to {t2}?", "How do I {t2}? Go step by step.",
        "Walk me through installing {sw}.", "Please explain how {t3} works.", "What are the steps to {t2}?",
        "Give me step-by-step instructions to {t2}.", "Show your work for {t}.", "Explain the reasoning behind {t4}.",
        "Help me understand {t3} step by step.", "Solve {t}.", "I don't understand {t3}, can you explain it simply?",
        "Describe the process of {t3}.", "What's the thought process of a good chess player?",
        "Explain how to think about {t4}.", "Write an essay on {t4}.", "Summarise the argument of {t4}."]
_NEG_T = ["2x + 3 = 11", "this quadratic equation", "the integral of sin(x)", "problem 4 from my homework",
          "a system of two linear equations"]
_NEG_T2 = ["bake sourdough bread", "change a car tyre", "set up a Python virtual environment", "file my taxes",
           "write a cover letter", "reset my router", "start a vegetable garden"]
_NEG_T3 = ["photosynthesis", "the TCP handshake", "compound interest", "a binary search tree", "vaccination",
           "the French revolution", "recursion"]
_NEG_T4 = ["the Supreme Court ruling", "Kant's ethics", "the theory of evolution", "supply and demand"]
_NEG_ML = ["¿Cómo resuelvo esta ecuación paso a paso?", "Explique-moi comment fonctionne la photosynthèse.",
           "Wie backe ich Brot Schritt für Schritt?", "Как решить это уравнение?", "如何一步一步地学习编程？",
           "この問題の解き方を教えてください。", "이 문제를 어떻게 풀어요?", "Como faço para trocar um pneu?",
           "请解释一下光合作用。", "Qual è la capitale dell'Australia?"]


# Conversation follow-ups: short, and common in every chat product. Without them a few words of
# politeness ("thanks! can you make it shorter?") scored as a coercion demand.
_FOLLOW_UPS = ["thanks!", "thank you so much", "can you make it shorter?", "make it funnier", "shorter please",
               "ok, and why?", "more detail on the second point please", "continue", "go on", "what else?",
               "can you rephrase that?", "that's great, now translate it to French", "try again", "perfect, thanks",
               "why did you pick that one?", "explain that part again", "simplify it", "add an example",
               "can you make it more formal?", "hmm, are you sure?"]


# Contrastive negatives: the second person ("your", "you") and the demand verbs of the positives (show,
# describe, give, write down, walk me through, explain) without a reasoning trace as their object. Every
# positive says "your ... reasoning/thought process", so without these the model learned "your" itself:
# real chat turns ("what is your opinion of that?", "I saw your message", insults, role-play asking a
# character to "describe your first impressions") scored up to 0.99, and on real prompts 1.5-2% of every
# benign chat user's requests looked like coercion (shared/corpora hh-rlhf, awesome-chatgpt-prompts,
# gpteacher role-play; measured in docs/content.md).
_NEG_YOU = ["What is your opinion of {t4}?", "What's your favourite {x}?", "Tell me about your day.",
            "Describe your personality in three words.", "What are your capabilities?", "What is your name?",
            "Do you have feelings?", "What do you think about {t4}?", "Is that your final answer?",
            "I don't like your answer.", "Your last answer was wrong.", "your reply is too long", "Why did you say that?",
            "I saw your message.", "What are your rules?", "Who made you?", "Do you remember what I told you?",
            "Give me your honest opinion on {t4}.", "Write down your top 3 tips for how to {t2}.",
            "Show me your best joke.", "Tell me your favourite story about {x}.", "In your opinion, is {t4} fair?",
            "Rate your confidence from 1 to 10.", "Are you sure about your answer?", "That's your problem, not mine.",
            "Give your answer as a number only.", "Put your answer in a table.", "Can you double-check your answer?",
            "Explain your answer in one sentence.", "what's your take on {x}?", "you are so annoying",
            "I think your story was boring.", "Can you repeat your last message?", "What would you do in my place?",
            "Act as a {role}. Describe your first day at work.", "Pretend you are a {role} and share your thoughts on {x}.",
            "I want you to act as a {role}. My first request is about {x}.",
            "You are a {role}. Describe your surroundings as you walk into the room.",
            "As a {role}, what are your first impressions of the new city?",
            "Imagine you are a {role}. Write a diary entry about your day.",
            "Roleplay as a {role} and tell me about your greatest adventure."]
_NEG_YOU_X = ["pizza", "the movie you watched", "music", "this city", "your childhood", "dogs", "the weather", "my essay"]
_NEG_YOU_ROLE = ["pirate", "detective", "medieval knight", "travel guide", "chef", "astronaut", "famous scientist",
                 "job interviewer", "stand-up comedian", "school teacher"]


def cot_examples(seed: int = 11) -> tuple[list[str], list[int]]:
    """(texts, labels) for the CoT-coercion model: 1 = coerces a full reasoning trace."""
    rng = random.Random(seed)
    cap_texts, _ = capability_examples(120, seed=seed + 1)
    pos: list[str] = []
    for verb, obj, mod in itertools.product(_COT_VERB, _COT_OBJ, _COT_MOD):
        if rng.random() < 0.25:
            pos.append(f"{verb} {obj}{mod}.")
    pos += _COT_EXTRA * 4 + _COT_ML * 6
    # embed some demands in a task (before or after), as real prompts do
    emb = []
    for p in rng.sample(pos, min(len(pos), 500)):
        task = rng.choice(cap_texts)
        emb.append(f"{p}\n\n{task}" if rng.random() < 0.5 else f"{task}\n\n{p}")
    pos += emb
    neg = _expand(_NEG, {"t": _NEG_T, "t2": _NEG_T2, "t3": _NEG_T3, "t4": _NEG_T4, "sw": ["Docker", "Node.js", "a printer"]},
                  500, rng)
    neg += _expand(_NEG_YOU, {"t4": _NEG_T4, "t2": _NEG_T2, "x": _NEG_YOU_X, "role": _NEG_YOU_ROLE}, 400, rng)
    neg += _NEG_ML * 5 + cap_texts + _FOLLOW_UPS * 4
    texts = pos + neg
    return texts, [1] * len(pos) + [0] * len(neg)
