"""A hidden Markov model with enumerated states in `pyro.markov`: `model_1` of Pyro's examples/hmm.py.

Source: examples/hmm.py in Pyro's repository, `model_1` (Dirichlet transition rows, Beta emission
probabilities per tone, a plate over sequences at dim -2, a masked `pyro.markov` loop over time with the
state enumerated in parallel), as written there, called as the example calls it with its ``args``
namespace (``hidden_dim``, ``jit``).

Changed: the example reads the JSB chorales (88 tones); `data` generates 4 binary sequences of lengths
10, 10, 8 and 6 over 3 tones from a two-state chain, from a seed, and ``args`` sets 2 hidden states.
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.util import ignore_jit_warnings

SOURCE = "examples/hmm.py (model_1)"
IDIOM = "pyro.markov, infer={'enumerate': 'parallel'}, poutine.mask, plate dim=-2"
CHEAP = False

NUM_SEQUENCES, MAX_LENGTH, DATA_DIM, HIDDEN_DIM = 4, 10, 3, 2
LENGTHS = (10, 10, 8, 6)
TRANSITION = ((0.9, 0.1), (0.2, 0.8))
EMISSION = ((0.1, 0.7, 0.2), (0.8, 0.2, 0.6))


def model_1(sequences, lengths, args, batch_size=None, include_prior=True):
    # Sometimes it is safe to ignore jit warnings. Here we use the
    # pyro.util.ignore_jit_warnings context manager to silence warnings about
    # conversion to integer, since we know all three numbers will be the same
    # across all invocations to the model.
    with ignore_jit_warnings():
        num_sequences, max_length, data_dim = map(int, sequences.shape)
        assert lengths.shape == (num_sequences,)
        assert lengths.max() <= max_length
    with poutine.mask(mask=include_prior):
        probs_x = pyro.sample(
            "probs_x",
            dist.Dirichlet(0.9 * torch.eye(args.hidden_dim) + 0.1).to_event(1),
        )
        probs_y = pyro.sample(
            "probs_y",
            dist.Beta(0.1, 0.9).expand([args.hidden_dim, data_dim]).to_event(2),
        )
    tones_plate = pyro.plate("tones", data_dim, dim=-1)
    # We subsample batch_size items out of num_sequences items. Note that since
    # we're using dim=-1 for the notes plate, we need to batch over a different
    # dimension, here dim=-2.
    with pyro.plate("sequences", num_sequences, batch_size, dim=-2) as batch:
        lengths = lengths[batch]
        x = 0
        # If we are not using the jit, then we can vary the program structure
        # each call by running for a dynamically determined number of time
        # steps, lengths.max(). However if we are using the jit, then we try to
        # keep a single program structure for all minibatches; the fixed
        # structure ends up being faster since each program structure would
        # need to trigger a new jit compile stage.
        for t in pyro.markov(range(max_length if args.jit else lengths.max())):
            with poutine.mask(mask=(t < lengths).unsqueeze(-1)):
                x = pyro.sample(
                    "x_{}".format(t),
                    dist.Categorical(probs_x[x]),
                    infer={"enumerate": "parallel"},
                )
                with tones_plate:
                    pyro.sample(
                        "y_{}".format(t),
                        dist.Bernoulli(probs_y[x.squeeze(-1)]),
                        obs=sequences[batch, t],
                    )


MODEL = model_1  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """``sequences`` (4 x 10 x 3, 0/1 floats, zero past each sequence's end), ``lengths`` (long) and the
    example's ``args`` (2 hidden states, no jit), drawn from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    transition, emission = torch.tensor(TRANSITION), torch.tensor(EMISSION)
    sequences = torch.zeros(NUM_SEQUENCES, MAX_LENGTH, DATA_DIM)
    for i, length in enumerate(LENGTHS):
        state = int(torch.multinomial(torch.full((HIDDEN_DIM,), 1.0 / HIDDEN_DIM), 1, generator=gen))
        for t in range(length):
            sequences[i, t] = torch.bernoulli(emission[state], generator=gen)
            state = int(torch.multinomial(transition[state], 1, generator=gen))
    args = argparse.Namespace(hidden_dim=HIDDEN_DIM, jit=False)
    return {"sequences": sequences, "lengths": torch.tensor(LENGTHS), "args": args}
