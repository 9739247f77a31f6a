"""Generators for what ordinary customers send: chat, follow-ups, study questions, support tickets,
batch extraction jobs, small app functions and the system prompts apps ship with."""

from __future__ import annotations

import numpy as np

from distillguard.simulate.prompts._fill import fill

W = {
    "thing": ["sourdough bread", "a leaking tap", "my bike's gears", "a sunburn", "tomato plants", "a resume",
              "jet lag", "a wedding toast", "a noisy fridge", "my cat's diet", "a budget spreadsheet",
              "a first marathon", "a job interview", "a road trip to Lisbon", "a slow laptop", "houseplants"],
    "a": ["Python", "renting", "index funds", "espresso", "electric cars", "TCP", "stocks", "yoga", "baking soda",
          "a Roth IRA", "Spanish", "React", "LED bulbs", "oat milk", "freelancing", "public transport"],
    "b": ["JavaScript", "buying", "bonds", "filter coffee", "hybrids", "UDP", "crypto", "pilates", "baking powder",
          "a 401k", "Portuguese", "Vue", "halogen bulbs", "almond milk", "a full-time job", "driving"],
    "text": ["a birthday message for my sister", "a polite email asking my landlord to fix the heating",
             "a short poem about autumn rain", "a cover letter for a barista job", "a toast for my best friend",
             "an apology text to a friend I forgot to call", "a product description for handmade candles",
             "a LinkedIn post about finishing my degree", "a limerick about a grumpy cat",
             "a thank-you note to my kid's teacher", "a tweet announcing our bakery's new opening hours"],
    "topic": ["black holes", "inflation", "the French revolution", "photosynthesis", "how vaccines work",
              "the stock market", "climate change", "the Roman empire", "quantum computing", "sleep cycles",
              "compound interest", "the immune system", "plate tectonics", "machine learning", "jazz history"],
    "audience": ["a 10 year old", "my grandmother", "a beginner", "someone in a hurry", "a high school student"],
    "place": ["Tokyo", "Lisbon", "Mexico City", "Iceland", "Rome", "Seoul", "Cape Town", "Vancouver"],
    "days": ["3", "4", "5", "7", "10"],
    "lang": ["Spanish", "French", "German", "Japanese", "Portuguese", "Korean", "Italian"],
    "aspect": ["cost", "safety", "the weather", "food", "getting around", "the kids", "time"],
}

CHAT = [
    "how do I deal with {thing}?", "What's the difference between {a} and {b}?",
    "Write {text}.", "can you write {text}", "Explain {topic} like I'm {audience}.",
    "Plan a {days}-day trip to {place} on a budget.", "is {a} better than {b} for a beginner?",
    "Give me 5 ideas for dinner tonight, I have chicken, rice and spinach.",
    "Help me understand {topic}. Keep it short.", "what should I know before trying {a}",
    "Summarize the main arguments for and against {a} in a few bullet points.",
    "Translate to {lang}: 'See you tomorrow at the station, don't be late!'",
    "My friend says {a} is a waste of money. Is that true?", "tips for {thing}?",
    "I have {small} minutes, what's a good workout I can do at home?",
    "Recommend some books about {topic}.", "Can you check my grammar: 'Me and him goes to the store yesterday.'",
    "What's your opinion on {a}?", "what do you think about {topic}?", "Tell me your favourite fact about {place}.",
]
FOLLOW = [
    "thanks! can you make it shorter?", "what about {aspect}?", "ok and why is that?",
    "can you give me an example", "translate that to {lang}", "Can you make it funnier?",
    "hmm that doesn't sound right", "perfect, now a version for {audience}", "and if I only had {small} dollars?",
    "can you put that in a table", "more detail on the second point please", "thank you!!",
    "wait, what did you mean by that last part?", "ok try again but more formal",
]
# Benign look-alikes of reasoning-trace coercion: ordinary users do ask a model to show its reasoning,
# "think step by step" is common prompting advice, and students want the working. A simulated benign
# world without them calibrates the CoT evidence on a benign reference with no such requests at all,
# and then a single real "explain your reasoning" looks one-in-a-million (it did: with real prompts
# from ../shared/corpora, 18% of benign accounts were flagged). Mixed in at ASK_REASONING_SHARE.
ASK_REASONING = [
    "how did you get that? explain your reasoning", "why? walk me through your thinking",
    "can you show your work for that?", "explain your reasoning step by step please",
    "what was your thought process there?", "I don't follow, show me how you worked it out step by step",
    "think it through again step by step and explain", "Let's think step by step.",
    "before answering, think step by step and show your reasoning",
]
STUDY_REASONING = [
    "Solve {eq}. Show your reasoning for each step.", "Think step by step and show all your work: what is {small}% of {int}?",
    "Explain your thinking step by step: why does {topic} matter?", "Let's think step by step. {eq}, what is x?",
    "Walk me through your reasoning for {eq}, I want to check my homework.",
]
#: share of follow-ups (and of study questions) drawn from the look-alikes above
ASK_REASONING_SHARE = {"follow": 0.02, "study": 0.1}

STUDY = [
    "Explain step by step how to solve {eq}.", "Can you walk me through {topic} step by step? I have an exam tomorrow.",
    "Explain step by step: a train leaves at {small}:00 going {int} km at {small}0 km/h. When does it arrive?",
    "show your work: what is {small}% of {int}?", "Why is the derivative of x^{small} equal to {small}x^{small}? "
    "explain step by step", "I don't get {topic}. Can you explain it step by step with an example?",
    "Solve {eq} and explain each step so I can do it myself next time.",
    "how do you find the area of a triangle with sides {small}, {small} and {small}? step by step pls",
]
W_STUDY = {**W, "eq": ["2x + {small} = {int}", "x^2 - {small}x + 6 = 0", "3(x - {small}) = {int}",
                       "log2(x) = {small}", "the system x + y = {small}, x - y = 2"]}

SUPPORT_TICKETS = [
    "My order {order} still hasn't arrived and tracking hasn't updated in {small} days.",
    "I was charged twice for invoice {order}. Please refund one of the charges.",
    "The app crashes when I try to upload a photo on Android {small}.", "How do I change my delivery address for {order}?",
    "I want to cancel my subscription before the next billing date.", "The {product} I received is damaged.",
    "Can I return the {product} if I already opened the box?", "Your website says {price} but I was charged more.",
    "Password reset emails never arrive in my inbox.", "Do you ship the {product} to {place}?",
]
W_SUPPORT = {**W, "order": ["#{int}{small}", "A-{int}-{small}", "ORD{int}"],
             "product": ["blender", "running shoes", "desk lamp", "headphones", "phone case", "coffee grinder",
                         "backpack", "monitor stand", "yoga mat"]}
SUPPORT_FRAMES = [
    "Classify the customer message into one of [billing, shipping, returns, technical, account, other]. "
    "Reply with the label only.\n\nMessage: {ticket}",
    "Draft a friendly reply to this customer. Keep it under 120 words and do not promise refunds.\n\n"
    "Customer: {ticket}",
    "Extract the order id, product and sentiment from the message as JSON with keys order_id, product, "
    "sentiment.\n\nMessage: {ticket}",
    "Summarize the following support conversation in one sentence for the agent dashboard.\n\n{ticket}",
]

BATCH = [
    "Extract the product name, brand, price and currency from this listing as JSON.\n\nListing: {brand} "
    "{product}, {adj} edition, now only {price} EUR incl. VAT. Free shipping over {int} EUR.",
    "Translate the following product description to {lang}. Keep formatting.\n\n{adj} {product} by {brand}. "
    "Ideal for everyday use. Dimensions {small}x{small} cm.",
    "Summarize this review in at most 20 words and give a sentiment score from -1 to 1.\n\nReview: The {product} "
    "from {brand} is {adj}. Battery lasted {small} hours. Would {verdict}.",
    "Categorize the document into the taxonomy path (e.g. Home > Kitchen > Appliances). Document: {brand} "
    "{product} {adj} model {int}.",
]
W_BATCH = {**W_SUPPORT, "brand": ["Acme", "Nordwind", "Helio", "Kestrel", "Bluefin", "Orbis", "Tamarind"],
           "adj": ["compact", "premium", "refurbished", "limited", "lightweight", "pro", "classic"],
           "verdict": ["buy again", "not recommend", "recommend to friends", "return it"]}

APP_FUNCS = [
    "Summarize the following note in 3 bullet points:\n\n{note}", "Rewrite this more politely: {note}",
    "Detect the language of this text and translate it to English: {foreign}",
    "Generate 3 short, catchy titles for a blog post about {topic}.",
    "Is this message spam? Answer yes or no.\n\n{note}", "Fix spelling and grammar: {note}",
]
W_APP = {**W, "note": ["meeting moved to thursday, bring the Q{small} numbers and the slides for {topic}",
                       "hey can u send me the invoice for last month, thx", "Reminder: dentist at {small}:30",
                       "WIN a FREE {thing} now!!! click here", "Team lunch on Friday at the {place} place?"],
          "foreign": ["Hola, ¿a qué hora abre la tienda mañana?", "Bonjour, je voudrais réserver une table.",
                      "Wie viel kostet der Versand nach Berlin?", "明日の会議は何時からですか？"]}

SYSTEM_APP = [
    "You are a helpful assistant for {brand}. Answer questions about orders, shipping and returns. Be concise.",
    "You are {brand}'s writing assistant. Match the user's tone and keep answers short.",
    "You are a friendly tutor. Never give the final answer directly; guide the student.",
    "You are an expert travel planner. Ask clarifying questions when needed.",
    "You are a customer support agent for {brand}. Follow company policy and escalate refunds over 100 EUR.",
    "You are a helpful assistant.", "You are an AI assistant inside a note-taking app. Reply in Markdown.",
    "You are an expert software engineer. Be precise and explain your reasoning briefly.",
    "You are an expert data analyst. Show your reasoning before giving the final number.",
    "You are {brand}Bot. Today is {day}. Keep replies under 200 words.",
]
W_SYS = {**W_BATCH, "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]}


def chat(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, CHAT, W, n)


def _with_lookalikes(rng: np.random.Generator, plain: list[str], lookalikes: list[str], share: float) -> list[str]:
    use = rng.random(len(plain)) < share
    return [a if u else p for p, a, u in zip(plain, lookalikes, use, strict=True)]


def follow(rng: np.random.Generator, n: int) -> list[str]:
    return _with_lookalikes(rng, fill(rng, FOLLOW, W, n), fill(rng, ASK_REASONING, W, n),
                            ASK_REASONING_SHARE["follow"])


def study(rng: np.random.Generator, n: int) -> list[str]:
    return _with_lookalikes(rng, fill(rng, STUDY, W_STUDY, n), fill(rng, STUDY_REASONING, W_STUDY, n),
                            ASK_REASONING_SHARE["study"])


def support(rng: np.random.Generator, n: int) -> list[str]:
    tickets = fill(rng, SUPPORT_TICKETS, W_SUPPORT, n)
    frames = fill(rng, SUPPORT_FRAMES, {"ticket": ["{ticket}"]}, n)
    return [f.replace("{ticket}", t) for f, t in zip(frames, tickets, strict=True)]


def batch(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, BATCH, W_BATCH, n)


def app(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, APP_FUNCS, W_APP, n)


def system(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, SYSTEM_APP, W_SYS, n)
