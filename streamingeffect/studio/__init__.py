"""The web studio: live effects on the browser's webcam (`streamingeffect serve`)."""
