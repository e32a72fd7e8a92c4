"""Run inside the vLLM environment (not kositp's): greedy token ids for pre-tokenized prompts.

usage: python vllm_greedy.py REQUEST.json RESULT.json
It imports only vLLM, so the two environments never have to share packages.
"""

import json
import sys


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        request = json.load(fh)
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=request["model"], dtype=request["dtype"], enforce_eager=True,
              max_model_len=request["max_model_len"], seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=request["max_tokens"],
                            stop_token_ids=request["stop_token_ids"])
    results = llm.generate([TokensPrompt(prompt_token_ids=p) for p in request["prompts"]], params, use_tqdm=False)
    outputs = [list(r.outputs[0].token_ids) for r in results]
    with open(sys.argv[2], "w", encoding="utf-8") as fh:
        json.dump({"outputs": outputs}, fh)


if __name__ == "__main__":
    main()
