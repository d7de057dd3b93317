//! Tokenizers in Hugging Face's `tokenizer.json` format, through the `tokenizers` crate:
//! loaded from a checkpoint folder, or trained here (byte-level BPE, as GPT-2's) on the text
//! a base model is pretrained on. `<|endoftext|>` separates documents.

use std::path::Path;

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder, TokenizerImpl,
};

use crate::model::Config;
use crate::{Error, Result};

/// The token that ends a document.
pub const END_OF_TEXT: &str = "<|endoftext|>";

type Inner = TokenizerImpl<
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// A tokenizer with its end-of-text id.
pub struct Tokenizer {
    inner: Inner,
    eot: u32,
}

fn tok_err(e: tokenizers::Error) -> Error {
    Error::InvalidInput(format!("tokenizer: {e}"))
}

impl Tokenizer {
    /// Loads `tokenizer.json`; it must define `<|endoftext|>`.
    pub fn load(path: &Path) -> Result<Self> {
        let inner = Inner::from_file(path).map_err(|e| {
            Error::InvalidInput(format!(
                "{}: {e}: give a Hugging Face tokenizer.json",
                path.display()
            ))
        })?;
        let eot = inner.token_to_id(END_OF_TEXT).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{} has no {END_OF_TEXT} token to separate documents",
                path.display()
            ))
        })?;
        Ok(Self { inner, eot })
    }

    /// Trains a byte-level BPE tokenizer of at most `vocab_size` tokens on `texts`.
    pub fn train_bpe(texts: &[String], vocab_size: usize) -> Result<Self> {
        if vocab_size < 257 + 1 {
            return Err(Error::InvalidInput(format!(
                "vocab_size {vocab_size} is too small: byte-level BPE needs 256 bytes plus {END_OF_TEXT}"
            )));
        }
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let mut inner: Inner = TokenizerBuilder::new()
            .with_model(ModelWrapper::BPE(BPE::default()))
            .with_normalizer(None)
            .with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
                false, true, true,
            ))))
            .with_post_processor(Some(PostProcessorWrapper::ByteLevel(ByteLevel::new(
                false, true, true,
            ))))
            .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::new(
                false, true, true,
            ))))
            .build()
            .map_err(tok_err)?;
        inner.train(&mut trainer, texts.iter()).map_err(tok_err)?;
        let eot = inner
            .token_to_id(END_OF_TEXT)
            .ok_or_else(|| Error::InvalidInput(format!("training lost {END_OF_TEXT}")))?;
        Ok(Self { inner, eot })
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, true).map_err(tok_err)
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner.decode(&ids, false).map_err(tok_err)
    }

    /// Number of tokens, special ones included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `<|endoftext|>`.
    pub fn eot(&self) -> i64 {
        self.eot as i64
    }

    /// Refuses a tokenizer whose ids do not fit the model's vocabulary.
    pub fn check(&self, model: &Config) -> Result<()> {
        if self.vocab_size() as i64 > model.vocab_size {
            return Err(Error::InvalidInput(format!(
                "the tokenizer has {} tokens but the model's vocabulary has {}: they do not belong together",
                self.vocab_size(),
                model.vocab_size
            )));
        }
        Ok(())
    }
}
